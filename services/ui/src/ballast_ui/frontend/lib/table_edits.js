// A data editor's rows from its edit state, as the server computes them
// (ballast_ui.widgets._apply_edits and _jsonable_rows; both run the shared cases in
// services/ui/frontend/test/table_edits_cases.json).

// The editor's edit state {edited_rows, added_rows, deleted_rows} applied to the rows
// it started from: edits first (by position in `base`; other positions are ignored),
// then deletions (by position in `base`), then the added rows at the end.
export function applyEdits(base, edits) {
  const rows = (base || []).map((r) => Object.assign({}, r));
  for (const [i, change] of Object.entries(edits.edited_rows || {})) {
    if (rows[Number(i)]) Object.assign(rows[Number(i)], change);
  }
  const gone = new Set((edits.deleted_rows || []).map(Number));
  return rows.filter((r, i) => !gone.has(i)).concat((edits.added_rows || []).map((r) => Object.assign({}, r)));
}

// Rows in their stored form: exactly `columns`, in order; an empty or missing cell is null.
// Every column type alike: the edit state is JSON already (a date cell "YYYY-MM-DD", a
// checkbox true/false, a number a number), so false and 0 are values, kept as they are.
export function denseRows(columns, rows) {
  return rows.map((r) => Object.fromEntries(columns.map((c) => {
    const x = r ? r[c] : null;
    return [c, x === undefined || x === '' ? null : x];
  })));
}

// The stored rows an edit state stands for.
export function editedRows(columns, base, edits) {
  return denseRows(columns, applyEdits(base, edits));
}

// Whether an edit state holds any edit (an editor just reset holds none).
export function hasEdits(edits) {
  return Boolean(Object.keys(edits.edited_rows || {}).length || (edits.added_rows || []).length
    || (edits.deleted_rows || []).length);
}
