// The invisible browser bridge (ballast_ui.components.bridge): drops acknowledged
// journal entries, hands unacknowledged ones back after a refresh, the offline banner,
// the session-cookie hand-off, and the Ctrl+Z / Ctrl+Shift+Z hotkeys.
import {
  FIRST_CHECK_MS, OFFLINE_MS, OK_MS, TIMEOUT_MS, editsText, historyAction, historyButtonSelector, offlineText,
  redeemHandoff,
} from './lib/bridge_logic.js';
import {
  dropAcknowledged, journalKey, loadJournal, pendingValues, saveJournal,
} from './lib/journal_store.js';

export default function (component) {
  const { data, setTriggerValue } = component;
  const w = window;
  const user = data.user;
  w.__ballastUser = user;
  if (!w.__ballastHealth) {
    // The UI server may be gone (restart, rollout, network): the page says so, instead
    // of the last "Saved" it was sent, while what is typed waits in the journal. The
    // banner is fixed over the page (nothing moves) and outside Streamlit's tree.
    w.__ballastHealth = true;
    const style = document.createElement('style');
    style.textContent = data.offline_css;
    document.head.appendChild(style);
    const banner = document.createElement('div');
    banner.className = 'ballast-offline';
    banner.setAttribute('role', 'status');
    banner.setAttribute('aria-live', 'polite');
    banner.hidden = true;
    document.body.appendChild(banner);
    const kept = () => {
      try {
        return Object.keys(JSON.parse(localStorage.getItem(journalKey(w.__ballastUser)) || '{}')).length;
      } catch (e) { return 0; }
    };
    const show = (offline) => {
      if (!offline) {
        delete document.body.dataset.boffline;
        banner.hidden = true;
        return;
      }
      banner.textContent = offlineText(w.__ballastUser ? kept() : 0);
      document.body.dataset.boffline = '1';
      banner.hidden = false;
    };
    const check = async () => {
      let ok = false;
      const stop = new AbortController();
      const timer = setTimeout(() => stop.abort(), TIMEOUT_MS);
      try {
        const r = await fetch('_stcore/health', { cache: 'no-store', signal: stop.signal });
        ok = r.ok;
      } catch (e) {
        ok = false;
      } finally {
        clearTimeout(timer);
      }
      show(!ok);
      setTimeout(check, ok ? OK_MS : OFFLINE_MS);
    };
    setTimeout(check, FIRST_CHECK_MS);
  }
  if (!w.__ballastHotkeys) {
    w.__ballastHotkeys = true;
    document.addEventListener('keydown', (e) => {
      const action = historyAction(e);
      if (!action || editsText(document.activeElement)) return;
      const page = document.querySelector('.st-key-bpage-' + (document.body.dataset.bpage || ''));
      if (!page) return;
      const btn = page.querySelector(historyButtonSelector(action));
      if (btn) { e.preventDefault(); btn.click(); }
    });
  }
  if (data.handoff && w.__ballastHandoff !== data.handoff) {
    w.__ballastHandoff = data.handoff;
    redeemHandoff(fetch, data.handoff).then((ok) => {
      if (ok) document.body.dataset.bsession = '1';
    });
  }
  if (data.clear_cookie && !w.__ballastCleared) {
    w.__ballastCleared = true;
    fetch('_ballast/logout', { method: 'POST', credentials: 'same-origin' });
  }
  if (!user) return;
  // An entry leaves the journal once the api acknowledged exactly its value.
  const j = loadJournal(localStorage, user);
  if (dropAcknowledged(j, data.acks)) saveJournal(localStorage, user, j);
  // Once per server session: after the UI server restarted, the page reconnects to a
  // new session (no reload) that has never seen the journal either.
  const restoreFor = user + ' ' + data.session;
  if (data.ready && w.__ballastRestored !== restoreFor) {
    w.__ballastRestored = restoreFor;
    const pending = pendingValues(j);
    if (Object.keys(pending).length) setTriggerValue('restore', pending);
  }
}
