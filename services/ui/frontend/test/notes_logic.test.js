import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  markerText, noteState, queuedClick, serverEnables, toolbarState, unsavedCount,
} from '../../src/ballast_ui/frontend/lib/notes_logic.js';

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

describe('toolbarState', () => {
  const notes = { 'f.a': { saved: 1, form: 'f' }, 'g.c': { saved: true, form: 'g' } };
  const known = { 'f.a': 1, 'g.c': true };
  const fresh = { count: 0, past: false, future: false, write: true };
  test('without pending values: the server\'s own state', () => {
    assert.deepEqual(toolbarState('f', fresh, {}, {}, {}),
      { undo: false, redo: false, apply: false, reset: false });
    assert.deepEqual(toolbarState('f', { count: 2, past: true, future: true, write: true }, {}, {}, {}),
      { undo: true, redo: true, apply: true, reset: true });
  });
  test('a change the server does not hold: an undo step, no redo, unsaved', () => {
    const form = { ...fresh, future: true };
    assert.deepEqual(toolbarState('f', form, notes, known, { 'f.a': 2 }),
      { undo: true, redo: false, apply: true, reset: true });
  });
  test('a pending value the server holds already changes nothing', () => {
    const form = { ...fresh, future: true };
    assert.deepEqual(toolbarState('f', form, notes, known, { 'f.a': 1 }),
      { undo: false, redo: true, apply: false, reset: false });
  });
  test('another form\'s change, or a field without a note, is not this form\'s', () => {
    assert.deepEqual(toolbarState('f', fresh, notes, known, { 'g.c': false, 'f.zz': 3 }),
      { undo: false, redo: false, apply: false, reset: false });
  });
  test('a change back to the saved value: undoable, nothing unsaved', () => {
    const k = { 'f.a': 5, 'g.c': true };
    assert.deepEqual(toolbarState('f', { ...fresh, count: 1 }, notes, k, { 'f.a': 1 }),
      { undo: true, redo: false, apply: false, reset: false });
  });
  test('Apply stays off for a reader', () => {
    assert.equal(toolbarState('f', { ...fresh, write: false }, notes, known, { 'f.a': 2 }).apply, false);
  });
});

describe('queuedClick', () => {
  const queued = { form: 'f', name: 'undo', after: { 'f.a': 2 } };
  test('sent once the server enables the button too', () => {
    assert.equal(queuedClick(queued, { count: 1, past: true, write: true }, { 'f.a': 2 }), 'click');
  });
  test('kept while the server has not seen the change it follows', () => {
    assert.equal(queuedClick(queued, { count: 0, past: false, write: true }, { 'f.a': 1 }), 'wait');
  });
  test('dropped when the server has the change and still says no, or the form is gone', () => {
    assert.equal(queuedClick(queued, { count: 0, past: false, write: true }, { 'f.a': 2 }), 'drop');
    assert.equal(queuedClick(queued, undefined, { 'f.a': 2 }), 'drop');
  });
  test('Apply for a reader is never sent', () => {
    const apply = { form: 'f', name: 'apply', after: { 'f.a': 2 } };
    assert.equal(queuedClick(apply, { count: 1, past: true, write: false }, { 'f.a': 2 }), 'drop');
  });
});

test('serverEnables: the server\'s own state of one button', () => {
  const form = { count: 1, past: false, future: true, write: false };
  assert.deepEqual(['undo', 'redo', 'apply', 'reset'].map((n) => serverEnables('f', form, n)),
    [false, true, false, true]);
});
