import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { fields, stringWidgetStates, sub } from '../../src/ballast_ui/frontend/lib/backmsg.js';

// Encoded by the installed Streamlit's protobuf classes (tests/ui/test_frontend_node.py).
const { cases } = JSON.parse(readFileSync(new URL('./backmsg_cases.json', import.meta.url), 'utf8'));
const bytes = (...b) => Uint8Array.from(b);

describe('recorded BackMsgs', () => {
  assert.ok(cases.length >= 4);
  for (const c of cases) {
    test(c.name, () => {
      const msg = new Uint8Array(Buffer.from(c.b64, 'base64'));
      assert.deepEqual([...stringWidgetStates(msg)], c.string_states);
    });
  }
});

describe('fields', () => {
  test('varints, one and more bytes', () => {
    // field 1 = 1, field 2 = 300, field 3 = 2**40 (beyond 32 bits)
    const msg = bytes(0x08, 0x01, 0x10, 0xac, 0x02, 0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20);
    assert.deepEqual(fields(msg), [[1, 1], [2, 300], [3, 2 ** 40]]);
  });

  test('length-delimited values are views of the message', () => {
    const msg = bytes(0x0a, 0x02, 0x68, 0x69, 0x12, 0x00);
    const out = fields(msg);
    assert.deepEqual(out.map(([n, v]) => [n, Array.from(v)]), [[1, [0x68, 0x69]], [2, []]]);
    assert.equal(out[0][1].buffer, msg.buffer);
  });

  test('fixed-width values are skipped', () => {
    // field 1 fixed64, field 2 fixed32, then field 3 = 7
    const msg = bytes(0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x15, 1, 2, 3, 4, 0x18, 0x07);
    assert.deepEqual(fields(msg), [[3, 7]]);
  });

  test('a large field number', () => {
    // field 2000, varint 5: key = 2000 * 8 = 16000 = 0x80 0x7d
    assert.deepEqual(fields(bytes(0x80, 0x7d, 0x05)), [[2000, 5]]);
  });

  test('malformed messages throw', () => {
    assert.throws(() => fields(bytes(0x08)), /varint/);
    assert.throws(() => fields(bytes(0x08, 0x80)), /varint/);
    assert.throws(() => fields(bytes(0x0a, 0x05, 0x01)), /len/);
    assert.throws(() => fields(bytes(0x0b)), /wire type/);
  });

  test('an empty message has no fields', () => {
    assert.deepEqual(fields(bytes()), []);
  });
});

describe('sub', () => {
  test('the embedded messages of one field, not its varints', () => {
    const msg = bytes(0x0a, 0x01, 0x41, 0x08, 0x02, 0x0a, 0x01, 0x42, 0x12, 0x01, 0x43);
    assert.deepEqual(sub(msg, 1).map((v) => Array.from(v)), [[0x41], [0x42]]);
  });
});

describe('stringWidgetStates', () => {
  // BackMsg{11: ClientState{2: WidgetStates{1: WidgetState{...}}}} around `widgets`.
  const wrap = (...widgets) => {
    const len = (b) => [b.length];  // all short here
    const states = widgets.flatMap((w) => [0x0a, ...len(w), ...w]);
    const client = [0x12, ...len(states), ...states];
    return bytes(0x5a, ...len(client), ...client);
  };
  const str = (no, s) => { const b = Array.from(Buffer.from(s)); return [(no << 3) | 2, b.length, ...b]; };

  test('a widget without an id or a string value is passed over', () => {
    const msg = wrap(str(6, 'no id'), str(1, 'no value'), [...str(1, 'w'), ...str(6, 'v')]);
    assert.deepEqual([...stringWidgetStates(msg)], [['w', 'v']]);
  });

  test('a malformed widget throws only once it is reached', () => {
    const msg = wrap([...str(1, 'ok'), ...str(6, '1')], [0x08, 0x05, ...str(6, 'id is a number')]);
    const states = stringWidgetStates(msg);
    assert.deepEqual(states.next().value, ['ok', '1']);
    assert.throws(() => states.next(), TypeError);
  });

  test('an invalid UTF-8 sequence is replaced, not thrown', () => {
    const msg = wrap([...str(1, 'w'), 0x32, 0x01, 0xff]);
    assert.deepEqual([...stringWidgetStates(msg)], [['w', '\ufffd']]);
  });
});
