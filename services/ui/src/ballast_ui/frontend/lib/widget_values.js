// A widget's value as the server stores it, from what its DOM shows: {v: value}, or
// null when the shown state is no value the widget could hold (yet).

// A number input's text ('int' or 'float'); blank is no value.
export function numberValue(kind, text) {
  if (text.trim() === '') return null;
  const n = kind === 'int' ? Number.parseInt(text, 10) : Number.parseFloat(text);
  return Number.isNaN(n) ? null : { v: n };
}

// A slider's position (rounded for an integer slider).
export function sliderValue(isInt, text) {
  const n = Number(text);
  return Number.isNaN(n) ? null : { v: isInt ? Math.round(n) : n };
}

// The option shown under `label` (m: {labels, values}, in the same order).
export function optionValue(m, label) {
  const i = m.labels.indexOf(label);
  return i < 0 ? null : { v: m.values[i] };
}

// The options shown under `labels`; null when any label is no option.
export function optionValues(m, labels) {
  const out = [];
  for (const label of labels) {
    const i = m.labels.indexOf(label);
    if (i < 0) return null;
    out.push(m.values[i]);
  }
  return { v: out };
}

// A date from its year, month and day fields (null: the field is empty): an ISO date,
// no date when all are empty, no value when only some are.
export function dateValue(y, mo, d) {
  if (y === null && mo === null && d === null) return { v: null };
  if (y === null || mo === null || d === null) return null;
  const p2 = (n) => String(n).padStart(2, '0');
  return { v: String(y).padStart(4, '0') + '-' + p2(mo) + '-' + p2(d) };
}
