import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  editsText, historyAction, historyButtonSelector, offlineText,
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
