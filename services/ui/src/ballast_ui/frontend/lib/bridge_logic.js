// The bridge's decisions, apart from the DOM.

// The offline banner's text, with the number of changes the journal keeps.
export function offlineText(n) {
  const what = n === 1 ? '1 change is kept' : n > 1 ? n + ' changes are kept' : 'What you type is kept';
  return 'Offline — the server cannot be reached. ' + what
    + ' in this browser and saved when it is back.';
}

// Health checks: the first after FIRST_CHECK_MS, then every OK_MS while the server
// answers and every OFFLINE_MS while it does not; one waits TIMEOUT_MS at most.
export const FIRST_CHECK_MS = 2000;
export const OK_MS = 2000;
export const OFFLINE_MS = 1000;
export const TIMEOUT_MS = 4000;

// The history action of a key press: 'undo' (Ctrl/Cmd+Z), 'redo' (Ctrl/Cmd+Shift+Z,
// Ctrl/Cmd+Y) or null.
export function historyAction(e) {
  if (!(e.ctrlKey || e.metaKey) || (e.key !== 'z' && e.key !== 'Z' && e.key !== 'y')) return null;
  return e.shiftKey || e.key === 'y' ? 'redo' : 'undo';
}

// Whether an element edits text itself (its own undo wins there).
export function editsText(el) {
  return Boolean(el && (el.tagName === 'TEXTAREA' || (el.tagName === 'INPUT' && (el.type === 'text' || el.type === 'number'))));
}

// The enabled undo or redo button of a page.
export function historyButtonSelector(action) {
  return (action === 'redo' ? '[class*="--redo"]' : '[class*="--undo"]') + ' button:not([disabled])';
}

// Posting a login hand-off nonce: tries in all, and the pause between two tries.
export const HANDOFF_TRIES = 5;
export const HANDOFF_RETRY_MS = 1000;

// Trade a login hand-off nonce for the session cookie (POST /_ballast/session). The
// post survives a reload started at once (keepalive), and an unreachable or failing
// server (network error, 5xx) is tried again: otherwise the sign-in would not outlive
// the next refresh. A 4xx (unknown, used or expired nonce) is final. Resolves to true
// once the cookie is set.
export async function redeemHandoff(fetchFn, nonce, { tries = HANDOFF_TRIES, retryMs = HANDOFF_RETRY_MS, sleep } = {}) {
  const pause = sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
  for (let i = 0; i < tries; i += 1) {
    if (i) await pause(retryMs);
    try {
      const r = await fetchFn('_ballast/session', {
        method: 'POST', credentials: 'same-origin', keepalive: true,
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ nonce }),
      });
      if (r.ok) return true;
      if (r.status < 500) return false;
    } catch (e) {
      // unreachable: try again
    }
  }
  return false;
}
