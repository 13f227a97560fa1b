import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';

import {
  base64, extension, fileValue, formatBytes, hex, keptText, refusal,
} from '../../src/ballast_ui/frontend/lib/file_logic.js';

describe('refusal', () => {
  test('any file when nothing is listed', () => {
    assert.equal(refusal({ name: 'notes', size: 5 }), null);
    assert.equal(refusal({ name: 'a.exe', size: 0 }, { accept: [] }), null);
  });
  test('only the listed extensions, in any case, with or without the dot', () => {
    const accept = ['csv', '.XLSX'];
    assert.equal(refusal({ name: 'Data.CSV', size: 1 }, { accept }), null);
    assert.equal(refusal({ name: 'book.xlsx', size: 1 }, { accept }), null);
    assert.match(refusal({ name: 'x.json', size: 1 }, { accept }), /x\.json is not one of: \.csv, \.xlsx\./);
    assert.match(refusal({ name: 'csv', size: 1 }, { accept }), /not one of/);
    assert.match(refusal({ name: '.csv', size: 1 }, { accept }), /not one of/);
  });
  test('larger than the limit', () => {
    assert.equal(refusal({ name: 'a', size: 10 }, { maxBytes: 10 }), null);
    assert.match(refusal({ name: 'a', size: 11 }, { maxBytes: 10 }), /a is 11 bytes; this field takes at most 10 bytes\./);
    assert.equal(refusal({ name: 'a', size: 1e12 }, { maxBytes: 0 }), null);
  });
});

test('extension', () => {
  assert.equal(extension('a.tar.GZ'), 'gz');
  assert.equal(extension('noext'), '');
  assert.equal(extension('.hidden'), '');
});

test('formatBytes', () => {
  assert.equal(formatBytes(0), '0 bytes');
  assert.equal(formatBytes(1023), '1,023 bytes');
  assert.equal(formatBytes(1536), '1.5 KB');
  assert.equal(formatBytes(12 * 1024 * 1024), '12.0 MB');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.0 GB');
});

describe('encoding', () => {
  test('hex and base64 agree with node over every byte value and a long buffer', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.equal(hex(all.buffer), Buffer.from(all).toString('hex'));
    assert.equal(base64(all), Buffer.from(all).toString('base64'));
    // Longer than one slice, not a multiple of it or of 3.
    const long = Uint8Array.from({ length: 0x8000 * 2 + 7 }, (_, i) => (i * 31) % 251);
    assert.equal(base64(long), Buffer.from(long).toString('base64'));
    assert.equal(base64(new Uint8Array(0)), '');
  });
});

describe('fileValue', () => {
  const file = { name: 'notes.txt', type: 'text/plain' };
  const bytes = new TextEncoder().encode('hello e2e');
  const sha = createHash('sha256').update(bytes).digest('hex');

  test('content inline up to the limit, with its SHA-256', async () => {
    const value = await fileValue(file, bytes, { inlineLimit: bytes.length, subtle: globalThis.crypto.subtle });
    assert.deepEqual(value, {
      name: 'notes.txt', size: 9, type: 'text/plain', sha256: sha, content_b64: Buffer.from(bytes).toString('base64'),
    });
  });
  test('larger than the limit: metadata only', async () => {
    const value = await fileValue(file, bytes, { inlineLimit: 8, subtle: globalThis.crypto.subtle });
    assert.equal(value.content_b64, null);
    assert.equal(value.sha256, sha);
    assert.equal(value.size, 9);
  });
  test('no crypto.subtle (not a secure context) or a failing one: no hash', async () => {
    assert.equal((await fileValue(file, bytes, { inlineLimit: 100 })).sha256, null);
    const broken = { digest: async () => { throw new Error('denied'); } };
    const value = await fileValue({ name: 'x' }, bytes, { inlineLimit: 100, subtle: broken });
    assert.equal(value.sha256, null);
    assert.equal(value.type, 'application/octet-stream');
  });
  test('an empty file', async () => {
    const value = await fileValue(file, new Uint8Array(0), { inlineLimit: 10 });
    assert.equal(value.size, 0);
    assert.equal(value.content_b64, '');
  });
});

test('keptText', () => {
  assert.equal(keptText(null), '');
  assert.equal(keptText({}), '');
  assert.equal(keptText({ name: 'a.csv', size: 12345 }), 'Kept: a.csv (12,345 bytes)');
});
