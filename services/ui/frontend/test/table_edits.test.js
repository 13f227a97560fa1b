import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  applyEdits, denseRows, editedRows, hasEdits,
} from '../../src/ballast_ui/frontend/lib/table_edits.js';

// The cases tests/ui/test_table_edits_shared.py runs against the server's code too.
const { cases } = JSON.parse(readFileSync(new URL('./table_edits_cases.json', import.meta.url), 'utf8'));

// Rows with their key order (the journal compares rows as JSON text).
const ordered = (rows) => rows.map((r) => Object.entries(r));

describe('the shared table-edit cases', () => {
  assert.ok(cases.length >= 20);
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(ordered(editedRows(c.columns, c.base, c.edits)), ordered(c.expected));
    });
  }
});

describe('applyEdits', () => {
  test('leaves the base rows alone', () => {
    const base = [{ a: 1 }];
    const edits = { edited_rows: { 0: { a: 2 } }, added_rows: [{ a: 3 }] };
    const rows = applyEdits(base, edits);
    assert.deepEqual(rows, [{ a: 2 }, { a: 3 }]);
    assert.deepEqual(base, [{ a: 1 }]);
    rows[1].a = 4;
    assert.deepEqual(edits.added_rows, [{ a: 3 }]);
  });

  test('a missing base is no rows', () => {
    assert.deepEqual(applyEdits(undefined, { added_rows: [{ a: 1 }] }), [{ a: 1 }]);
  });
});

describe('denseRows', () => {
  test('a missing row is a row of nulls', () => {
    assert.deepEqual(denseRows(['a', 'b'], [null]), [{ a: null, b: null }]);
  });
});

describe('hasEdits', () => {
  test('an empty or reset state holds none', () => {
    assert.equal(hasEdits({}), false);
    assert.equal(hasEdits({ edited_rows: {}, added_rows: [], deleted_rows: [] }), false);
  });

  test('any edit, addition or deletion counts', () => {
    assert.equal(hasEdits({ edited_rows: { 0: { a: 1 } } }), true);
    assert.equal(hasEdits({ added_rows: [{}] }), true);
    assert.equal(hasEdits({ deleted_rows: [0] }), true);
  });
});
