// The browser journal in localStorage: one JSON object per user,
// {widget key: {v: value, t: time it was journaled}}. Entries leave it only once the
// api acknowledged exactly their value.

export const journalKey = (user) => 'ballast.journal.' + user;

// Same value, compared as JSON text (the form the server and the journal store).
export const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export function loadJournal(storage, user) {
  try { return JSON.parse(storage.getItem(journalKey(user)) || '{}'); } catch (err) { return {}; }
}

export function saveJournal(storage, user, j) {
  try { storage.setItem(journalKey(user), JSON.stringify(j)); } catch (err) { /* full or denied */ }
}

// Typing journaled before the widget's description arrived is kept under
// 'cls:<css class>': move it to the widget's key (the newer entry wins). Returns
// whether anything moved.
export function adoptClassEntries(j, meta) {
  let moved = false;
  for (const k of Object.keys(j)) {
    const m = k.startsWith('cls:') && meta[k.slice(4)];
    if (!m) continue;
    if (!j[m.key] || j[m.key].t <= j[k].t) j[m.key] = j[k];
    delete j[k];
    moved = true;
  }
  return moved;
}

// Drop the entries the api acknowledged with exactly their value. Returns whether any went.
export function dropAcknowledged(j, acks) {
  let changed = false;
  for (const [key, val] of Object.entries(acks || {})) {
    const entry = j[key];
    if (entry && JSON.stringify(entry.v) === JSON.stringify(val)) { delete j[key]; changed = true; }
  }
  return changed;
}

// {widget key: value} of every entry (what a new server session is handed back).
export function pendingValues(j) {
  const pending = {};
  for (const [key, entry] of Object.entries(j)) pending[key] = entry.v;
  return pending;
}
