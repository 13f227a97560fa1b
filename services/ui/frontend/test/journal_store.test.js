import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  adoptClassEntries, dropAcknowledged, journalKey, loadJournal, pendingValues, same, saveJournal,
} from '../../src/ballast_ui/frontend/lib/journal_store.js';

// localStorage's interface over a Map; `fail` makes setItem throw (storage full).
const storage = (init = {}, fail = false) => {
  const m = new Map(Object.entries(init));
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => { if (fail) throw new Error('QuotaExceededError'); m.set(k, String(v)); },
    map: m,
  };
};

describe('journal storage', () => {
  test('one key per user', () => {
    assert.equal(journalKey('u1'), 'ballast.journal.u1');
  });

  test('load what was saved', () => {
    const s = storage();
    saveJournal(s, 'u1', { 'p.name': { v: 'x', t: 1 } });
    assert.deepEqual(loadJournal(s, 'u1'), { 'p.name': { v: 'x', t: 1 } });
    assert.deepEqual(loadJournal(s, 'u2'), {});
  });

  test('an unreadable journal loads empty; a full storage throws nothing', () => {
    assert.deepEqual(loadJournal(storage({ 'ballast.journal.u1': '{not json' }), 'u1'), {});
    assert.doesNotThrow(() => saveJournal(storage({}, true), 'u1', {}));
  });
});

describe('same', () => {
  test('compares as JSON text', () => {
    assert.equal(same([{ a: 1 }], [{ a: 1 }]), true);
    assert.equal(same({ a: 1, b: 2 }, { b: 2, a: 1 }), false);
    assert.equal(same(undefined, null), false);
    assert.equal(same('', ''), true);
  });
});

describe('adoptClassEntries', () => {
  const meta = { 'st-key-p-name': { key: 'p.name', kind: 'text' } };

  test('typing kept by class moves to the widget key', () => {
    const j = { 'cls:st-key-p-name': { v: 'typed', t: 5 }, 'cls:st-key-other': { v: 'o', t: 1 } };
    assert.equal(adoptClassEntries(j, meta), true);
    assert.deepEqual(j, { 'p.name': { v: 'typed', t: 5 }, 'cls:st-key-other': { v: 'o', t: 1 } });
  });

  test('the newer entry wins (a tie goes to the class entry)', () => {
    const older = { 'p.name': { v: 'newer', t: 9 }, 'cls:st-key-p-name': { v: 'older', t: 5 } };
    adoptClassEntries(older, meta);
    assert.deepEqual(older, { 'p.name': { v: 'newer', t: 9 } });
    const tie = { 'p.name': { v: 'keyed', t: 5 }, 'cls:st-key-p-name': { v: 'by class', t: 5 } };
    adoptClassEntries(tie, meta);
    assert.deepEqual(tie, { 'p.name': { v: 'by class', t: 5 } });
  });

  test('nothing to move', () => {
    const j = { 'p.name': { v: 'x', t: 1 } };
    assert.equal(adoptClassEntries(j, meta), false);
    assert.deepEqual(j, { 'p.name': { v: 'x', t: 1 } });
  });
});

describe('dropAcknowledged', () => {
  test('an entry goes once exactly its value is acknowledged', () => {
    const j = { a: { v: 'typed', t: 1 }, b: { v: [{ x: null }], t: 2 }, c: { v: 3, t: 3 } };
    assert.equal(dropAcknowledged(j, { a: 'older', b: [{ x: null }], d: 'unknown' }), true);
    assert.deepEqual(j, { a: { v: 'typed', t: 1 }, c: { v: 3, t: 3 } });
  });

  test('no acknowledgements', () => {
    const j = { a: { v: 1, t: 1 } };
    assert.equal(dropAcknowledged(j, undefined), false);
    assert.equal(dropAcknowledged(j, {}), false);
    assert.deepEqual(j, { a: { v: 1, t: 1 } });
  });
});

describe('pendingValues', () => {
  test('the values alone', () => {
    assert.deepEqual(pendingValues({ a: { v: 'x', t: 1 }, b: { v: null, t: 2 } }), { a: 'x', b: null });
    assert.deepEqual(pendingValues({}), {});
  });
});
