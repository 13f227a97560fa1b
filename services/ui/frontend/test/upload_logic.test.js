import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  RECORD_TTL_MS, completion, dropRecord, findRecord, keepRecord, loadRecords, partCount, partRange,
  pool, progress, progressText, resumePlan, retryDelay, sameFile, withRetries,
} from '../../src/ballast_ui/frontend/lib/upload_logic.js';

const MIB = 1024 * 1024;

function memoryStorage() {
  const items = new Map();
  return {
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => items.set(k, String(v)),
    removeItem: (k) => items.delete(k),
    items,
  };
}

describe('parts', () => {
  test('every byte in exactly one part, the last one short', () => {
    const size = 12 * MIB + 5;
    const count = partCount(size, 5 * MIB);
    assert.equal(count, 3);
    assert.deepEqual(partRange(1, size, 5 * MIB), [0, 5 * MIB]);
    assert.deepEqual(partRange(3, size, 5 * MIB), [10 * MIB, size]);
    let covered = 0;
    for (let n = 1; n <= count; n += 1) {
      const [from, to] = partRange(n, size, 5 * MIB);
      assert.equal(from, covered);
      covered = to;
    }
    assert.equal(covered, size);
    assert.equal(partCount(5 * MIB, 5 * MIB), 1);
    assert.equal(partCount(1, 5 * MIB), 1);
  });
});

describe('resumePlan', () => {
  const size = 12 * MIB;
  test('a new upload sends every part', () => {
    assert.deepEqual(resumePlan(size, 5 * MIB, []), { todo: [1, 2, 3], done: {}, sent: 0 });
  });
  test('only the parts the store does not hold', () => {
    const held = [{ number: 2, size: 5 * MIB, etag: '"b"' }];
    assert.deepEqual(resumePlan(size, 5 * MIB, held), { todo: [1, 3], done: { 2: '"b"' }, sent: 5 * MIB });
  });
  test('a part of the wrong size, or out of range, is sent again or ignored', () => {
    const held = [
      { number: 1, size: 4 * MIB, etag: '"short"' },
      { number: 3, size: 2 * MIB, etag: '"c"' },
      { number: 4, size: 1, etag: '"x"' },
      { number: 0, size: 1, etag: '"y"' },
    ];
    assert.deepEqual(resumePlan(size, 5 * MIB, held), { todo: [1, 2], done: { 3: '"c"' }, sent: 2 * MIB });
  });
  test('all held: nothing left but completing', () => {
    const held = [1, 2, 3].map((n) => ({ number: n, size: n < 3 ? 5 * MIB : 2 * MIB, etag: `e${n}` }));
    const plan = resumePlan(size, 5 * MIB, held);
    assert.deepEqual(plan.todo, []);
    assert.equal(plan.sent, size);
    assert.deepEqual(completion(plan.done), [
      { number: 1, etag: 'e1' }, { number: 2, etag: 'e2' }, { number: 3, etag: 'e3' },
    ]);
  });
});

describe('completion', () => {
  test('parts in numeric order (not string order)', () => {
    assert.deepEqual(completion({ 10: 'j', 2: 'b', 1: 'a' }).map((p) => p.number), [1, 2, 10]);
  });
});

describe('records', () => {
  const file = { name: 'big.csv', size: 42, lastModified: 1000 };
  test('the same file again finds its upload, per user', () => {
    const s = memoryStorage();
    keepRecord(s, 'u1', file, 'up-1', 5000);
    assert.equal(findRecord(s, 'u1', { ...file }, 6000).id, 'up-1');
    assert.equal(findRecord(s, 'u2', file, 6000), null);
    assert.equal(findRecord(s, 'u1', { ...file, lastModified: 1001 }, 6000), null);
    assert.equal(findRecord(s, 'u1', { ...file, size: 43 }, 6000), null);
    assert.equal(sameFile(null, file), false);
  });
  test('a new upload of the same file replaces the record; dropping forgets it', () => {
    const s = memoryStorage();
    keepRecord(s, 'u', file, 'a', 1);
    keepRecord(s, 'u', { name: 'other.csv', size: 1, lastModified: 1 }, 'b', 1);
    keepRecord(s, 'u', file, 'c', 2);
    assert.deepEqual(loadRecords(s, 'u', 3).map((r) => r.id).sort(), ['b', 'c']);
    dropRecord(s, 'u', 'c', 3);
    dropRecord(s, 'u', 'b', 3);
    assert.deepEqual(loadRecords(s, 'u', 3), []);
    assert.equal(s.items.size, 0);
  });
  test('old or broken records are ignored', () => {
    const s = memoryStorage();
    keepRecord(s, 'u', file, 'a', 0);
    assert.equal(findRecord(s, 'u', file, RECORD_TTL_MS + 1), null);
    s.setItem('ballast.uploads.u', '{not json');
    assert.deepEqual(loadRecords(s, 'u'), []);
    s.setItem('ballast.uploads.u', '{"a": 1}');
    assert.deepEqual(loadRecords(s, 'u'), []);
  });
  test('a full storage does not break the upload', () => {
    const s = { getItem: () => null, setItem: () => { throw new Error('quota'); }, removeItem: () => {} };
    keepRecord(s, 'u', file, 'a');
    assert.deepEqual(loadRecords(s, 'u'), []);
  });
});

describe('progress', () => {
  test('finished parts plus the bytes in flight, never past the total', () => {
    assert.deepEqual(progress(100, 40, { 3: 10, 4: 5 }), { done: 55, total: 100, fraction: 0.55 });
    assert.equal(progress(100, 100, { 1: 50 }).done, 100);
    assert.equal(progress(0, 0, {}).fraction, 0);
  });
  test('readable text', () => {
    assert.equal(progressText(12_300_000, 40_000_000), '12.3 MB of 40.0 MB (30 %)');
    assert.equal(progressText(2_500_000_000, 5_000_000_000), '2.50 GB of 5.00 GB (50 %)');
    assert.equal(progressText(0, 10), '0 B of 10 B (0 %)');
  });
});

describe('retries', () => {
  test('backoff doubles after the first retry', () => {
    assert.deepEqual([1, 2, 3, 4].map((a) => retryDelay(a, 100)), [0, 100, 200, 400]);
  });
  test('a failed part is sent again until it goes through', async () => {
    const waits = [];
    let calls = 0;
    const etag = await withRetries(async (attempt) => {
      calls += 1;
      if (attempt < 3) throw new Error('network');
      return '"ok"';
    }, { sleep: async (ms) => { waits.push(ms); }, base: 10 });
    assert.equal(etag, '"ok"');
    assert.equal(calls, 3);
    assert.deepEqual(waits, [10, 20]);
  });
  test('gives up after the last attempt, at once for a refusal', async () => {
    let calls = 0;
    await assert.rejects(withRetries(async () => { calls += 1; throw new Error('down'); },
      { attempts: 4, sleep: async () => {} }), /down/);
    assert.equal(calls, 4);
    calls = 0;
    const refusal = Object.assign(new Error('cancelled'), { retry: false });
    await assert.rejects(withRetries(async () => { calls += 1; throw refusal; },
      { sleep: async () => {} }), /cancelled/);
    assert.equal(calls, 1);
  });
});

describe('pool', () => {
  test('at most `parallel` at once, every item once', async () => {
    let running = 0;
    let most = 0;
    const seen = [];
    await pool([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running += 1;
      most = Math.max(most, running);
      await sleep(2);
      seen.push(n);
      running -= 1;
    });
    assert.equal(most, 3);
    assert.deepEqual(seen.sort(), [1, 2, 3, 4, 5, 6, 7]);
  });
  test('the first failure stops taking new items and is thrown', async () => {
    const seen = [];
    await assert.rejects(pool([1, 2, 3, 4, 5], 1, async (n) => {
      seen.push(n);
      if (n === 2) throw new Error('part 2 failed');
    }), /part 2 failed/);
    assert.deepEqual(seen, [1, 2]);
    await pool([], 3, async () => { throw new Error('never'); });
  });
});
