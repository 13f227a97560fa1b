// Streamlit's data editor sends an edit to the server EDIT_SYNC_MS after it was made
// (a debounced callback in its DataFrame element), and the way there runs through
// three timers (the cell editor closing, that wait, the widget manager's batching). A
// refresh or a closed tab before the last one ran lost the edit, and the browser
// journal, which reads what is sent, never saw it. tests/ui/test_frontend_node.py
// checks that the installed Streamlit still waits exactly this long.
export const EDIT_SYNC_MS = 150;
// Rounds of timers a flush runs: each may set the next one of the chain.
export const FLUSH_ROUNDS = 20;

const DATA_EDITOR = /\/DataFrame\.[^/\s]*\.js/;
const DEBOUNCED = /\/useDebouncedCallback\.[^/\s]*\.js/;

// Whether a timer of `ms` set from `stack` is the data editor's wait before it sends
// (its selection's too: both are what the user did).
export const isEditSync = (ms, stack) => ms === EDIT_SYNC_MS && DATA_EDITOR.test(stack) && DEBOUNCED.test(stack);

// Wrap `win.setTimeout` and `win.clearTimeout`: the data editor's wait is skipped (the
// edit is sent in the next task), and the returned `flush` runs at once every timer
// of at most EDIT_SYNC_MS still to come, and those they set, in order: called as the
// page goes away, it sends (and journals) an edit that was still on its way.
// `stackOf` gives the call stack (Chromium names each frame's script).
export function sendEditsAtOnce(win, stackOf = () => new Error().stack || '') {
  const later = win.setTimeout.bind(win);
  const cancel = win.clearTimeout.bind(win);
  const soon = new Map();
  win.setTimeout = function (fn, ms, ...args) {
    const wait = ms === EDIT_SYNC_MS && isEditSync(ms, stackOf()) ? 0 : ms;
    if (typeof fn !== 'function' || !((wait || 0) <= EDIT_SYNC_MS)) return later(fn, wait, ...args);
    const run = () => fn.apply(win, args);
    const id = later(() => { soon.delete(id); run(); }, wait);
    soon.set(id, run);
    return id;
  };
  win.clearTimeout = function (id) {
    soon.delete(id);
    return cancel(id);
  };
  return function flush() {
    for (let round = 0; round < FLUSH_ROUNDS && soon.size; round += 1) {
      const due = [...soon.entries()];
      soon.clear();
      for (const [id, run] of due) {
        cancel(id);
        try { run(); } catch (err) { /* the page is going: the next one still runs */ }
      }
    }
  };
}
