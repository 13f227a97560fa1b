import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { markerText, noteState, unsavedCount } from '../../src/ballast_ui/frontend/lib/notes_logic.js';

describe('noteState', () => {
  test('modified when the shown value differs from the saved one, clean when equal', () => {
    assert.equal(noteState({ saved: false, form: 'f' }, true), 'modified');
    assert.equal(noteState({ saved: false, form: 'f' }, false), 'clean');
    assert.equal(noteState({ saved: ['a', 'b'], form: 'f' }, ['a', 'b']), 'clean');
    assert.equal(noteState({ saved: ['a', 'b'], form: 'f' }, ['b', 'a']), 'modified');
    assert.equal(noteState({ saved: null, form: 'f' }, ''), 'modified');
    assert.equal(noteState({ saved: 1234.5, form: 'f' }, 1234.5), 'clean');
  });
  test('no guess over an error, or without a note', () => {
    assert.equal(noteState({ saved: 'x', error: true, form: 'f' }, 'y'), null);
    assert.equal(noteState(undefined, 'y'), null);
  });
});

describe('unsavedCount', () => {
  const notes = {
    'f.a': { saved: 1, form: 'f' },
    'f.b': { saved: 'x', form: 'f' },
    'g.c': { saved: true, form: 'g' },
  };
  test('the server count, moved by each pending value of the form', () => {
    const known = { 'f.a': 1, 'f.b': 'x', 'g.c': true };
    assert.equal(unsavedCount('f', { count: 0 }, notes, known, {}), 0);
    assert.equal(unsavedCount('f', { count: 0 }, notes, known, { 'f.a': 2 }), 1);
    assert.equal(unsavedCount('f', { count: 0 }, notes, known, { 'f.a': 2, 'f.b': 'y' }), 2);
    // Another form's field, or a field without a note, does not count here.
    assert.equal(unsavedCount('f', { count: 0 }, notes, known, { 'g.c': false, 'f.zz': 5 }), 0);
  });
  test('a field the server counts as dirty, set back to its saved value', () => {
    const known = { 'f.a': 7, 'f.b': 'x' };
    assert.equal(unsavedCount('f', { count: 3 }, notes, known, { 'f.a': 1 }), 2);
    assert.equal(unsavedCount('f', { count: 3 }, notes, known, { 'f.a': 8 }), 3);
  });
  test('never below zero (a count from an older run)', () => {
    assert.equal(unsavedCount('f', { count: 0 }, notes, { 'f.a': 2 }, { 'f.a': 1 }), 0);
  });
});

test('markerText', () => {
  assert.deepEqual(markerText(0), { text: '✓ no unsaved changes', tone: 'green' });
  assert.deepEqual(markerText(3), { text: '● 3 unsaved', tone: 'orange' });
});
