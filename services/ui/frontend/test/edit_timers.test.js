import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  EDIT_SYNC_MS, FLUSH_ROUNDS, keepEditsOnTheirWay,
} from '../../src/ballast_ui/frontend/lib/edit_timers.js';

// A window whose timers wait until the test runs them (`tick`) or clears them.
const browser = () => {
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
  const flush = keepEditsOnTheirWay(win);
  const tick = () => { for (const [id, fn] of [...pending]) { pending.delete(id); fn(); } };
  return { win, flush, created, tick };
};

describe('a data editor edit on its way is sent as the page goes', () => {
  test('timers keep their delay and arguments', () => {
    const b = browser();
    const got = [];
    b.win.setTimeout((x) => got.push(x), EDIT_SYNC_MS, 'a');
    b.win.setTimeout((x, y) => got.push(x + y), 1000, 'b', 'c');
    b.win.setTimeout((x) => got.push(x), undefined, 'd');
    assert.deepEqual(b.created.map((t) => t.ms), [EDIT_SYNC_MS, 1000, undefined]);
    b.tick();
    assert.deepEqual(got, ['a', 'bc', 'd']);
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
      }, EDIT_SYNC_MS);
    }, 0);
    b.win.setTimeout(() => ran.push('long'), EDIT_SYNC_MS + 1);
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

  test('a timer given as code text is passed on untouched', () => {
    const b = browser();
    b.win.setTimeout('void 0', 0);
    assert.equal(b.created.length, 1);
    b.flush();
  });
});
