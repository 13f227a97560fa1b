// Streamlit's data editor sends an edit to the server EDIT_SYNC_MS after it was made
// (a debounced callback in its DataFrame element), and the way there runs through
// three timers (the cell editor closing, that wait, the widget manager's batching). A
// refresh or a closed tab before the last one ran lost the edit, and the browser
// journal, which reads what is sent, never saw it. tests/ui/test_frontend_node.py
// checks that the installed Streamlit still waits exactly this long.
export const EDIT_SYNC_MS = 150;
// Rounds of timers a flush runs: each may set the next one of the chain.
export const FLUSH_ROUNDS = 20;

// Wrap `win.setTimeout` and `win.clearTimeout` to keep the timers of at most
// EDIT_SYNC_MS still to come; the returned `flush` runs them at once, and those they
// set, in order. Called as the page goes away, it sends (and journals) an edit that
// was still on its way. Timers run as before otherwise: the data editor keeps its
// own pace (sending each edit at once made its new row race the server's answer).
export function keepEditsOnTheirWay(win) {
  const later = win.setTimeout.bind(win);
  const cancel = win.clearTimeout.bind(win);
  const soon = new Map();
  win.setTimeout = function (fn, ms, ...args) {
    if (typeof fn !== 'function' || !((ms || 0) <= EDIT_SYNC_MS)) return later(fn, ms, ...args);
    const run = () => fn.apply(win, args);
    const id = later(() => { soon.delete(id); run(); }, ms);
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
