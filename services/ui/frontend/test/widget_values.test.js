import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  dateValue, numberValue, optionValue, optionValues, sliderValue,
} from '../../src/ballast_ui/frontend/lib/widget_values.js';

describe('numberValue', () => {
  test('integers and floats', () => {
    assert.deepEqual(numberValue('int', '42'), { v: 42 });
    assert.deepEqual(numberValue('int', '4.9'), { v: 4 });
    assert.deepEqual(numberValue('float', '4.5'), { v: 4.5 });
    assert.deepEqual(numberValue('float', '-0.25e1'), { v: -2.5 });
  });

  test('blank or no number is no value', () => {
    assert.equal(numberValue('int', ''), null);
    assert.equal(numberValue('float', '   '), null);
    assert.equal(numberValue('int', 'abc'), null);
    assert.equal(numberValue('float', '-'), null);
  });
});

describe('sliderValue', () => {
  test('rounded for an integer slider only', () => {
    assert.deepEqual(sliderValue(true, '2.6'), { v: 3 });
    assert.deepEqual(sliderValue(false, '2.6'), { v: 2.6 });
    assert.equal(sliderValue(true, 'x'), null);
  });
});

describe('options', () => {
  const m = { labels: ['Low', 'High', ''], values: [1, 'high', null] };

  test('the value under a label', () => {
    assert.deepEqual(optionValue(m, 'High'), { v: 'high' });
    assert.deepEqual(optionValue(m, ''), { v: null });
    assert.equal(optionValue(m, 'Medium'), null);
  });

  test('several labels: all or no value', () => {
    assert.deepEqual(optionValues(m, ['High', 'Low']), { v: ['high', 1] });
    assert.deepEqual(optionValues(m, []), { v: [] });
    assert.equal(optionValues(m, ['High', 'Medium']), null);
  });
});

describe('dateValue', () => {
  test('an ISO date, zero-padded', () => {
    assert.deepEqual(dateValue(2024, 3, 7), { v: '2024-03-07' });
    assert.deepEqual(dateValue(999, 12, 31), { v: '0999-12-31' });
  });

  test('all fields empty is no date; some empty is no value yet', () => {
    assert.deepEqual(dateValue(null, null, null), { v: null });
    assert.equal(dateValue(2024, null, 1), null);
    assert.equal(dateValue(null, 1, 1), null);
  });
});
