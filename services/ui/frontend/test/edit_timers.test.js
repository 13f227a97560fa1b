import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  EDIT_SYNC_MS, FLUSH_ROUNDS, isEditSync, sendEditsAtOnce,
} from '../../src/ballast_ui/frontend/lib/edit_timers.js';

// Call stacks as Chromium writes them, from the data editor's debounced send and from
// elsewhere.
const EDITOR = [
  'Error',
  '    at win.setTimeout (http://ui/_stcore/bidi-components/ballast-ui.journal/lib/edit_timers.js:21:12)',
  '    at http://ui/static/js/useTimeout.odDhD3su.js:1:461',
  '    at http://ui/static/js/useDebouncedCallback.By9MfI_m.js:1:544',
  '    at http://ui/static/js/DataFrame.-f9-1zS0.js:204:15634',
].join('\n');
const TOOLTIP = 'Error\n    at b (http://ui/static/js/DataFrame.-f9-1zS0.js:2:48842)';
const OTHER = 'Error\n    at http://ui/static/js/useDebouncedCallback.By9MfI_m.js:1:544\n    at http://ui/static/js/TextInput.MPWivlu9.js:1:9';

// A window whose timers wait until the test runs them (`tick`) or clears them.
const browser = (stack = { now: '' }) => {
  let next = 0;
  const pending = new Map();
  const created = [];
  const win = {
    setTimeout: (fn, ms, ...args) => {
      next += 1;
      pending.set(next, () => fn(...args));
      created.push({ id: next, ms });
      return next;
    },
    clearTimeout: (id) => { pending.delete(id); },
  };
  const flush = sendEditsAtOnce(win, () => stack.now);
  const tick = () => { for (const [id, fn] of [...pending]) { pending.delete(id); fn(); } };
  return { win, flush, pending, created, tick, stack };
};

describe('the data editor sends its edits at once', () => {
  test('its debounced send is recognised by delay and stack', () => {
    assert.equal(isEditSync(EDIT_SYNC_MS, EDITOR), true);
    assert.equal(isEditSync(EDIT_SYNC_MS + 1, EDITOR), false);
    assert.equal(isEditSync(EDIT_SYNC_MS, TOOLTIP), false);
    assert.equal(isEditSync(EDIT_SYNC_MS, OTHER), false);
    assert.equal(isEditSync(EDIT_SYNC_MS, ''), false);
  });

  test('that timer waits nothing; every other one keeps its delay and arguments', () => {
    const b = browser({ now: EDITOR });
    b.win.setTimeout(() => {}, EDIT_SYNC_MS);
    assert.equal(b.created.at(-1).ms, 0);
    const got = [];
    b.win.setTimeout((x) => got.push(x), 1000, 'a');
    assert.equal(b.created.at(-1).ms, 1000);
    b.stack.now = OTHER;
    b.win.setTimeout((x, y) => got.push(x + y), EDIT_SYNC_MS, 'b', 'c');
    assert.equal(b.created.at(-1).ms, EDIT_SYNC_MS);
    b.tick();
    assert.deepEqual(got, ['a', 'bc']);
  });

  test('the stack is read only for a timer of that delay', () => {
    let read = 0;
    const win = { setTimeout: () => 1, clearTimeout: () => {} };
    sendEditsAtOnce(win, () => { read += 1; return EDITOR; });
    win.setTimeout(() => {}, 0);
    win.setTimeout(() => {}, 40);
    assert.equal(read, 0);
    win.setTimeout(() => {}, EDIT_SYNC_MS);
    assert.equal(read, 1);
  });

  test('a flush runs the short timers still to come and those they set, each once', () => {
    const b = browser();
    const ran = [];
    // A chain of three timers, as from a cell's Enter to the message sent.
    b.win.setTimeout(() => {
      ran.push('closed');
      b.win.setTimeout(() => {
        ran.push('synced');
        b.win.setTimeout(() => ran.push('sent'), 0);
      }, 0);
    }, 0);
    b.win.setTimeout(() => ran.push('long'), 5000);
    const cleared = b.win.setTimeout(() => ran.push('cleared'), 10);
    b.win.clearTimeout(cleared);
    b.win.setTimeout(() => { throw new Error('broken'); }, 10);
    b.flush();
    assert.deepEqual(ran, ['closed', 'synced', 'sent']);
    // The browser's own timers of those were cancelled: nothing runs twice.
    b.tick();
    assert.deepEqual(ran, ['closed', 'synced', 'sent', 'long']);
  });

  test('a timer that ran by itself is not run again by a flush', () => {
    const b = browser();
    let runs = 0;
    b.win.setTimeout(() => { runs += 1; }, 0);
    b.tick();
    b.flush();
    assert.equal(runs, 1);
  });

  test('a flush ends even when every timer sets another', () => {
    const b = browser();
    let runs = 0;
    const again = () => { runs += 1; b.win.setTimeout(again, 0); };
    b.win.setTimeout(again, 0);
    b.flush();
    assert.equal(runs, FLUSH_ROUNDS);
  });

  test('the real stack names the calling script', () => {
    const win = { setTimeout: (fn, ms) => ms, clearTimeout: () => {} };
    sendEditsAtOnce(win);
    assert.equal(win.setTimeout(() => {}, EDIT_SYNC_MS), EDIT_SYNC_MS);
  });
});
