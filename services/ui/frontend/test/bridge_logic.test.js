import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  editsText, historyAction, historyButtonSelector, offlineText, redeemHandoff,
} from '../../src/ballast_ui/frontend/lib/bridge_logic.js';

describe('offlineText', () => {
  test('says how many changes the browser keeps', () => {
    const tail = ' in this browser and saved when it is back.';
    assert.equal(offlineText(0), 'Offline — the server cannot be reached. What you type is kept' + tail);
    assert.equal(offlineText(1), 'Offline — the server cannot be reached. 1 change is kept' + tail);
    assert.equal(offlineText(3), 'Offline — the server cannot be reached. 3 changes are kept' + tail);
  });
});

describe('historyAction', () => {
  test('Ctrl/Cmd+Z undoes; with Shift, or Ctrl/Cmd+Y, redoes', () => {
    assert.equal(historyAction({ ctrlKey: true, key: 'z' }), 'undo');
    assert.equal(historyAction({ metaKey: true, key: 'z' }), 'undo');
    assert.equal(historyAction({ ctrlKey: true, shiftKey: true, key: 'Z' }), 'redo');
    assert.equal(historyAction({ ctrlKey: true, key: 'y' }), 'redo');
  });

  test('other keys are none of its business', () => {
    assert.equal(historyAction({ key: 'z' }), null);
    assert.equal(historyAction({ ctrlKey: true, key: 'a' }), null);
    assert.equal(historyAction({ ctrlKey: true, key: 'Y' }), null);
  });
});

describe('editsText', () => {
  test('text fields keep their own undo', () => {
    assert.equal(editsText({ tagName: 'TEXTAREA' }), true);
    assert.equal(editsText({ tagName: 'INPUT', type: 'text' }), true);
    assert.equal(editsText({ tagName: 'INPUT', type: 'number' }), true);
    assert.equal(editsText({ tagName: 'INPUT', type: 'checkbox' }), false);
    assert.equal(editsText({ tagName: 'BODY' }), false);
    assert.equal(editsText(null), false);
  });
});

describe('historyButtonSelector', () => {
  test('the enabled button of the action', () => {
    assert.equal(historyButtonSelector('undo'), '[class*="--undo"] button:not([disabled])');
    assert.equal(historyButtonSelector('redo'), '[class*="--redo"] button:not([disabled])');
  });
});

describe('redeemHandoff', () => {
  const answers = (...xs) => {
    const calls = [];
    const fetchFn = async (url, init) => {
      calls.push({ url, init });
      const x = xs.shift();
      if (x instanceof Error) throw x;
      return { ok: x >= 200 && x < 300, status: x };
    };
    return { calls, fetchFn };
  };
  const noSleep = { sleep: async () => {} };

  test('posts the nonce once, surviving a reload, and reports the cookie set', async () => {
    const { calls, fetchFn } = answers(200);
    assert.equal(await redeemHandoff(fetchFn, 'n1', noSleep), true);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, '_ballast/session');
    assert.equal(calls[0].init.keepalive, true);
    assert.deepEqual(JSON.parse(calls[0].init.body), { nonce: 'n1' });
  });

  test('tries again after a network error or a 5xx', async () => {
    const { calls, fetchFn } = answers(new TypeError('offline'), 502, 200);
    assert.equal(await redeemHandoff(fetchFn, 'n2', noSleep), true);
    assert.equal(calls.length, 3);
  });

  test('a 4xx (used or expired nonce) is final', async () => {
    const { calls, fetchFn } = answers(400, 200);
    assert.equal(await redeemHandoff(fetchFn, 'n3', noSleep), false);
    assert.equal(calls.length, 1);
  });

  test('gives up after the tries, pausing between them', async () => {
    const pauses = [];
    const { calls, fetchFn } = answers(503, 503, 503);
    const sleep = async (ms) => { pauses.push(ms); };
    assert.equal(await redeemHandoff(fetchFn, 'n4', { tries: 3, retryMs: 7, sleep }), false);
    assert.equal(calls.length, 3);
    assert.deepEqual(pauses, [7, 7]);
  });
});
