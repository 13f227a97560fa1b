import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CELL_EDITOR, heldCommitKey, holdCommitKeys, keyInit,
} from '../../src/ballast_ui/frontend/lib/grid_keys.js';

// An element inside a cell editor or not, attached to the page or not.
const element = (inEditor, connected = true) => {
  const el = {
    isConnected: connected,
    closest: (sel) => (sel === CELL_EDITOR && inEditor ? {} : null),
    dispatched: [],
    dispatchEvent(ev) { this.dispatched.push(ev); return true; },
  };
  return el;
};

const keydown = (key, target, more = {}) => ({
  type: 'keydown',
  key,
  code: key,
  location: 0,
  repeat: false,
  shiftKey: false,
  altKey: false,
  ctrlKey: false,
  metaKey: false,
  isTrusted: true,
  isComposing: false,
  keyCode: 13,
  target,
  stopped: false,
  prevented: false,
  preventDefault() { this.prevented = true; },
  stopImmediatePropagation() { this.stopped = true; },
  ...more,
});

// A window whose timers run when the test says, in the order they were set, and
// which records its capture-phase keydown listener.
const browser = () => {
  const timers = [];
  const win = {
    listener: null,
    addEventListener(type, fn, capture) {
      assert.equal(type, 'keydown');
      assert.equal(capture, true);
      this.listener = fn;
    },
    setTimeout: (fn, ms) => { timers.push({ fn, ms }); return timers.length; },
    KeyboardEvent: class {
      constructor(type, init) { Object.assign(this, init, { type, isTrusted: false }); }
    },
  };
  const runTimers = () => { while (timers.length) timers.shift().fn(); };
  return { win, timers, runTimers };
};

describe('Enter and Tab in a cell editor', () => {
  test('are held: a user\'s Enter or Tab keydown in a cell editor, nothing else', () => {
    const cell = element(true);
    assert.equal(heldCommitKey(keydown('Enter', cell)), true);
    assert.equal(heldCommitKey(keydown('Tab', cell, { shiftKey: true })), true);
    assert.equal(heldCommitKey(keydown('Enter', cell, { ctrlKey: true })), true);
    // Shift+Enter starts a new line in the cell.
    assert.equal(heldCommitKey(keydown('Enter', cell, { shiftKey: true })), false);
    // Other keys, other elements, events sent again, IME composition: passed on.
    assert.equal(heldCommitKey(keydown('a', cell)), false);
    assert.equal(heldCommitKey(keydown('Escape', cell)), false);
    assert.equal(heldCommitKey(keydown('Enter', element(false))), false);
    assert.equal(heldCommitKey(keydown('Enter', cell, { isTrusted: false })), false);
    assert.equal(heldCommitKey(keydown('Enter', cell, { isComposing: true })), false);
    assert.equal(heldCommitKey(keydown('Enter', cell, { keyCode: 229 })), false);
    assert.equal(heldCommitKey(keydown('Enter', cell, { type: 'keyup' })), false);
    assert.equal(heldCommitKey(keydown('Enter', null)), false);
    assert.equal(heldCommitKey(keydown('Enter', {})), false);
  });

  test('a copy keeps the key and its modifiers', () => {
    const init = keyInit(keydown('Tab', element(true), { shiftKey: true, code: 'Tab' }));
    assert.deepEqual(init, {
      key: 'Tab',
      code: 'Tab',
      location: 0,
      repeat: false,
      shiftKey: true,
      altKey: false,
      ctrlKey: false,
      metaKey: false,
      bubbles: true,
      cancelable: true,
      composed: true,
    });
  });

  test('Enter is sent again after the timers of the keys typed before it', () => {
    const b = browser();
    holdCommitKeys(b.win);
    const cell = element(true);
    const order = [];
    // The cell editor's timer of the last character typed, not run yet.
    b.win.setTimeout(() => order.push('character\'s timer'), 0);
    const enter = keydown('Enter', cell);
    b.win.listener(enter);
    // Held: the cell editor does not see this one.
    assert.equal(enter.prevented, true);
    assert.equal(enter.stopped, true);
    assert.deepEqual(cell.dispatched, []);
    b.win.setTimeout(() => order.push(`enter sent: ${cell.dispatched.length}`), 0);
    b.runTimers();
    assert.deepEqual(order, ['character\'s timer', 'enter sent: 1']);
    const [again] = cell.dispatched;
    assert.equal(again.type, 'keydown');
    assert.equal(again.key, 'Enter');
    assert.equal(again.bubbles, true);
    // The copy is not held again.
    b.win.listener(again);
    assert.equal(b.timers.length, 0);
  });

  test('other keys pass at once, and an editor gone meanwhile gets nothing', () => {
    const b = browser();
    holdCommitKeys(b.win);
    const typed = keydown('a', element(true));
    b.win.listener(typed);
    assert.equal(typed.prevented, false);
    assert.equal(typed.stopped, false);
    assert.equal(b.timers.length, 0);
    const gone = element(true);
    b.win.listener(keydown('Enter', gone));
    gone.isConnected = false;
    b.runTimers();
    assert.deepEqual(gone.dispatched, []);
  });
});
