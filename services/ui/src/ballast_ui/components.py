"""Browser-side elements (``st.components.v2``, inline JS, no build step, no iframe).

- `nav`: the page navigation. A click shows the target page at once in the browser
  (every permitted page is rendered and kept; CSS shows the one named by
  ``body[data-bpage]``), then tells the server, whose answer sets the URL.
- `journal`: the browser journal. Every controlled widget's value is read from the
  DOM right after each user event (typing not yet committed by Streamlit included) and
  kept in ``localStorage`` when it differs from what the server knows, until the api
  acknowledged it; a refresh at any moment loses nothing.
- `bridge`: drops acknowledged journal entries, hands unacknowledged ones back after a
  refresh, the session-cookie hand-off, and the Ctrl+Z / Ctrl+Shift+Z hotkeys.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import streamlit as st

from ballast_ui.widgets import fragment_done

NAV_JS = r"""
export default function(component) {
  const { data, setTriggerValue, parentElement } = component;
  const w = window;
  let root = parentElement.querySelector('nav.ballast-nav');
  const mark = (page) => {
    root.querySelectorAll('a[data-page]').forEach((a) => {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
  };
  if (!root) {
    root = document.createElement('nav');
    root.className = 'ballast-nav';
    root.setAttribute('aria-label', 'Pages');
    parentElement.appendChild(root);
    root.addEventListener('click', (e) => {
      const a = e.target.closest('a[data-page]');
      if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      const page = a.dataset.page;
      document.body.dataset.bpage = page;
      mark(page);
      // The URL is left to the server's answer (Streamlit pushes the history entry):
      // Streamlit sends its own idea of the query string with every rerun, so a URL
      // pushed here would make the server confirm an older click after a newer one
      // and push a stale entry into the history.
      w.__ballastNavPending = { page, t: performance.now() };
      setTriggerValue('nav', page);
    });
    if (!w.__ballastPop) {
      w.__ballastPop = true;
      window.addEventListener('popstate', () => {
        const page = new URLSearchParams(window.location.search).get('page');
        if (page && document.querySelector('.st-key-bpage-' + page)) {
          document.body.dataset.bpage = page;
          w.__ballastNavPending = { page, t: performance.now() };
        }
      });
    }
  }
  if (!w.__ballastLoading) {
    // The page load is over once the shown page has its heading and no element of any
    // page is still a loading skeleton, for 300 ms; pages hide their skeletons until
    // then (see ballast_ui.app.LOADING_CSS), never after (a rerun must not hide them).
    w.__ballastLoading = true;
    const t0 = performance.now();
    let calm = 0;
    const tick = () => {
      const shown = document.querySelector('.st-key-bpage-' + (document.body.dataset.bpage || data.current));
      const busy = document.querySelector('[class*="st-key-bpage-"] [data-testid="stSkeleton"]');
      calm = shown && shown.querySelector('h1, h2, h3') && !busy ? calm + 1 : 0;
      if (calm >= 6 || performance.now() - t0 > 10000) document.body.dataset.bloaded = '1';
      else setTimeout(tick, 50);
    };
    tick();
  }
  const html = data.items.map((it) =>
    `<a href="${it.href}" data-page="${it.name}"><span aria-hidden="true">${it.icon}</span> ${it.title}</a>`
  ).join('');
  if (root.__html !== html) { root.innerHTML = html; root.__html = html; }
  const pending = w.__ballastNavPending;
  if (pending && pending.page !== data.current && performance.now() - pending.t < 3000) {
    mark(pending.page);  // the server has not caught up with a click yet
  } else {
    w.__ballastNavPending = null;
    document.body.dataset.bpage = data.current;
    mark(data.current);
  }
}
"""

NAV_CSS = """
nav.ballast-nav { display: flex; flex-direction: column; gap: 2px; }
nav.ballast-nav a { display: block; padding: 6px 10px; border-radius: 6px; text-decoration: none;
  color: inherit; line-height: 1.5rem; height: 2.25rem; box-sizing: border-box; }
nav.ballast-nav a:hover { background: rgba(128,128,128,.12); }
nav.ballast-nav a[aria-current="page"] { background: rgba(128,128,128,.22); font-weight: 600; }
nav.ballast-nav a:focus-visible { outline: 2px solid #1c64f2; outline-offset: 1px; }
"""

JOURNAL_JS = r"""
export default function(component) {
  const { data } = component;
  const w = window;
  w.__ballastMeta = Object.assign(w.__ballastMeta || {}, data.meta || {});
  w.__ballastKnown = Object.assign(w.__ballastKnown || {}, data.known || {});
  w.__ballastUser = data.user;
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  // Typing journaled before this element arrived is kept under 'cls:<class>': name it.
  if (data.user) {
    const sk = 'ballast.journal.' + data.user;
    try {
      const j = JSON.parse(localStorage.getItem(sk) || '{}');
      let moved = false;
      for (const k of Object.keys(j)) {
        const m = k.startsWith('cls:') && w.__ballastMeta[k.slice(4)];
        if (!m) continue;
        if (!j[m.key] || j[m.key].t <= j[k].t) j[m.key] = j[k];
        delete j[k];
        moved = true;
      }
      if (moved) localStorage.setItem(sk, JSON.stringify(j));
    } catch (err) {}
  }
  if (w.__ballastJournal) return;
  w.__ballastJournal = true;
  const pick = (box, sel) => box.querySelector(sel);
  // Read a widget's value from the DOM, in the form the server stores it.
  const read = (m, box) => {
    let el;
    switch (m.kind) {
      case 'text':
        el = pick(box, 'textarea, input');
        return el ? { v: el.value } : null;
      case 'int': case 'float': {
        el = pick(box, 'input');
        if (!el || el.value.trim() === '') return null;
        const n = m.kind === 'int' ? Number.parseInt(el.value, 10) : Number.parseFloat(el.value);
        return Number.isNaN(n) ? null : { v: n };
      }
      case 'bool':
        el = pick(box, 'input[type="checkbox"]');
        return el ? { v: el.checked } : null;
      case 'slider': {
        el = pick(box, 'input[type="range"]');
        if (!el) return null;
        const n = Number(el.value);
        return Number.isNaN(n) ? null : { v: m.int ? Math.round(n) : n };
      }
      case 'select': {
        el = pick(box, 'input[role="combobox"]');
        if (!el) return null;
        const i = m.labels.indexOf(el.value);
        return i < 0 ? null : { v: m.values[i] };
      }
      case 'multi': {
        const out = [];
        for (const tag of box.querySelectorAll('[data-tag]')) {
          const i = m.labels.indexOf(tag.getAttribute('aria-label'));
          if (i < 0) return null;
          out.push(m.values[i]);
        }
        return { v: out };
      }
      case 'date': {
        const part = (t) => {
          const s = box.querySelector('[role="spinbutton"][data-type="' + t + '"]');
          return s && s.hasAttribute('aria-valuenow') ? Number(s.getAttribute('aria-valuenow')) : null;
        };
        const y = part('year'), mo = part('month'), d = part('day');
        if (y === null && mo === null && d === null) return { v: null };
        if (y === null || mo === null || d === null) return null;
        const p2 = (n) => String(n).padStart(2, '0');
        return { v: String(y).padStart(4, '0') + '-' + p2(mo) + '-' + p2(d) };
      }
      default:
        return null;
    }
  };
  // The widget the user works on (pointer, keyboard or focus went into it last).
  // Option lists and calendars are portals outside the widget: they count for it.
  const widgetOf = (el) => {
    const text = el instanceof HTMLTextAreaElement || (el instanceof HTMLInputElement && el.type === 'text');
    for (let n = el instanceof Element ? el : null; n; n = n.parentElement) {
      for (const c of n.classList) {
        if (!c.startsWith('st-key-')) continue;
        if (w.__ballastMeta[c]) return c;
        // A text field drawn before its journal entry arrived: journal it by class.
        if (text && n.matches('[data-testid="stTextInput"], [data-testid="stTextArea"]')) return c;
      }
    }
    return null;
  };
  // Journal the active widget when its shown value differs from what the server knows.
  const scan = () => {
    const user = w.__ballastUser;
    const cls = w.__ballastActive;
    const m = cls && (w.__ballastMeta[cls] || { key: 'cls:' + cls, kind: 'text' });
    if (!user || !m) return;
    const box = document.querySelector('.' + cls);
    if (!box) return;
    const got = read(m, box);
    if (!got) return;
    const sk = 'ballast.journal.' + user;
    let j = {};
    try { j = JSON.parse(localStorage.getItem(sk) || '{}'); } catch (err) {}
    const entry = j[m.key];
    if (entry ? same(entry.v, got.v) : same(w.__ballastKnown[m.key], got.v)) return;
    j[m.key] = { v: got.v, t: Date.now() };
    try { localStorage.setItem(sk, JSON.stringify(j)); } catch (err) {}
  };
  w.__ballastScan = scan;
  // Data editors. Their cells are drawn on a canvas, so instead of the DOM the journal
  // reads the edit state the browser sends to the server (Streamlit's BackMsg: field 11
  // rerun_script > 2 widget_states > 1 widgets > {1 id, 6 string_value}) and applies it
  // to the rows the editor started from (`meta.base`), as the server does. A state is
  // taken only when it differs from the last one sent for that widget and holds edits:
  // a state resent unchanged, or an editor just reset, may belong to rows the server
  // has replaced since.
  const fields = (b) => {
    const out = [];
    let i = 0;
    const varint = () => {
      let x = 0, f = 1, c;
      do { if (i >= b.length) throw new Error('varint'); c = b[i++]; x += (c & 127) * f; f *= 128; } while (c & 128);
      return x;
    };
    while (i < b.length) {
      const k = varint(), no = Math.floor(k / 8), wt = k % 8;
      if (wt === 0) out.push([no, varint()]);
      else if (wt === 2) { const n = varint(); if (i + n > b.length) throw new Error('len'); out.push([no, b.subarray(i, i + n)]); i += n; }
      else if (wt === 1) i += 8;
      else if (wt === 5) i += 4;
      else throw new Error('wire type');
    }
    return out;
  };
  const sub = (msg, no) => fields(msg).filter(([n, v]) => n === no && v instanceof Uint8Array).map(([, v]) => v);
  const utf8 = new TextDecoder();
  const sentTables = {};
  const dense = (m, rows) => rows.map((r) => Object.fromEntries(m.columns.map((c) => {
    const x = r ? r[c] : null;
    return [c, x === undefined || x === '' ? null : x];
  })));
  const applyEdits = (m, st) => {
    const rows = (m.base || []).map((r) => Object.assign({}, r));
    for (const [i, change] of Object.entries(st.edited_rows || {})) {
      if (rows[Number(i)]) Object.assign(rows[Number(i)], change);
    }
    const gone = new Set((st.deleted_rows || []).map(Number));
    return dense(m, rows.filter((r, i) => !gone.has(i)).concat((st.added_rows || []).map((r) => Object.assign({}, r))));
  };
  const journalTables = (bytes) => {
    const user = w.__ballastUser;
    const tables = Object.values(w.__ballastMeta).filter((m) => m.kind === 'table');
    if (!user || !tables.length) return;
    for (const cs of sub(bytes, 11)) for (const ws of sub(cs, 2)) for (const wd of sub(ws, 1)) {
      const f = fields(wd);
      const id = f.find(([n]) => n === 1), val = f.find(([n]) => n === 6);
      if (!id || !val) continue;
      const wid = utf8.decode(id[1]);
      const m = tables.find((t) => wid.endsWith('-' + t.key));
      const text = utf8.decode(val[1]);
      if (!m || sentTables[wid] === text) continue;
      sentTables[wid] = text;
      const st = JSON.parse(text);
      // No edits: the editor was reset to new rows, which this element may not have yet.
      if (!Object.keys(st.edited_rows || {}).length && !(st.added_rows || []).length
        && !(st.deleted_rows || []).length) continue;
      const rows = applyEdits(m, st);
      const sk = 'ballast.journal.' + user;
      let j = {};
      try { j = JSON.parse(localStorage.getItem(sk) || '{}'); } catch (err) {}
      const entry = j[m.key];
      if (entry ? same(entry.v, rows) : same(dense(m, w.__ballastKnown[m.key] || []), rows)) continue;
      j[m.key] = { v: rows, t: Date.now() };
      try { localStorage.setItem(sk, JSON.stringify(j)); } catch (err) {}
    }
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      if (data instanceof Uint8Array) journalTables(data);
      else if (data instanceof ArrayBuffer) journalTables(new Uint8Array(data));
    } catch (err) {}
    return send.call(this, data);
  };
  const enter = (e) => { const c = widgetOf(e.target); if (c) w.__ballastActive = c; };
  for (const ev of ['pointerdown', 'focusin', 'keydown']) document.addEventListener(ev, enter, true);
  const soon = (e) => {
    enter(e);
    scan();
    for (const ms of [0, 40, 150, 400, 1000]) setTimeout(scan, ms);
  };
  for (const ev of ['input', 'change', 'click', 'keyup', 'pointerup']) {
    document.addEventListener(ev, soon, true);
  }
}
"""

BRIDGE_JS = r"""
export default function(component) {
  const { data, setTriggerValue } = component;
  const w = window;
  const user = data.user;
  const storeKey = user ? 'ballast.journal.' + user : null;
  const load = () => { try { return JSON.parse(localStorage.getItem(storeKey) || '{}'); } catch (e) { return {}; } };
  const save = (j) => { try { localStorage.setItem(storeKey, JSON.stringify(j)); } catch (e) {} };
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
        return Object.keys(JSON.parse(localStorage.getItem('ballast.journal.' + w.__ballastUser) || '{}')).length;
      } catch (e) { return 0; }
    };
    const show = (offline) => {
      if (!offline) {
        delete document.body.dataset.boffline;
        banner.hidden = true;
        return;
      }
      const n = w.__ballastUser ? kept() : 0;
      const what = n === 1 ? '1 change is kept' : n > 1 ? n + ' changes are kept' : 'What you type is kept';
      banner.textContent = 'Offline — the server cannot be reached. ' + what
        + ' in this browser and saved when it is back.';
      document.body.dataset.boffline = '1';
      banner.hidden = false;
    };
    const check = async () => {
      let ok = false;
      const stop = new AbortController();
      const timer = setTimeout(() => stop.abort(), 4000);
      try {
        const r = await fetch('_stcore/health', { cache: 'no-store', signal: stop.signal });
        ok = r.ok;
      } catch (e) {
        ok = false;
      } finally {
        clearTimeout(timer);
      }
      show(!ok);
      setTimeout(check, ok ? 2000 : 1000);
    };
    setTimeout(check, 2000);
  }
  if (!w.__ballastHotkeys) {
    w.__ballastHotkeys = true;
    document.addEventListener('keydown', (e) => {
      if (!(e.ctrlKey || e.metaKey) || (e.key !== 'z' && e.key !== 'Z' && e.key !== 'y')) return;
      const a = document.activeElement;
      if (a && (a.tagName === 'TEXTAREA' || (a.tagName === 'INPUT' && (a.type === 'text' || a.type === 'number')))) return;
      const page = document.querySelector('.st-key-bpage-' + (document.body.dataset.bpage || ''));
      if (!page) return;
      const redo = e.shiftKey || e.key === 'y';
      const btn = page.querySelector((redo ? '[class*="--redo"]' : '[class*="--undo"]') + ' button:not([disabled])');
      if (btn) { e.preventDefault(); btn.click(); }
    });
  }
  if (data.handoff && w.__ballastHandoff !== data.handoff) {
    w.__ballastHandoff = data.handoff;
    fetch('_ballast/session', { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ nonce: data.handoff }) });
  }
  if (data.clear_cookie && !w.__ballastCleared) {
    w.__ballastCleared = true;
    fetch('_ballast/logout', { method: 'POST', credentials: 'same-origin' });
  }
  if (!storeKey) return;
  // An entry leaves the journal once the api acknowledged exactly its value.
  const j = load();
  let changed = false;
  for (const [key, val] of Object.entries(data.acks || {})) {
    const entry = j[key];
    if (entry && JSON.stringify(entry.v) === JSON.stringify(val)) { delete j[key]; changed = true; }
  }
  if (changed) save(j);
  // Once per server session: after the UI server restarted, the page reconnects to a
  // new session (no reload) that has never seen the journal either.
  const restoreFor = user + ' ' + data.session;
  if (data.ready && w.__ballastRestored !== restoreFor) {
    w.__ballastRestored = restoreFor;
    const pending = {};
    for (const [key, entry] of Object.entries(j)) pending[key] = entry.v;
    if (Object.keys(pending).length) setTriggerValue('restore', pending);
  }
}
"""

# While the UI server is unreachable (see BRIDGE_JS): the banner, and no claim that
# everything is saved (the badge, the forms' "no unsaved changes"; Streamlit's markdown
# sets its own visibility, hence the descendants).
OFFLINE_CSS = """
.ballast-offline { position: fixed; top: 0; left: 50%; transform: translateX(-50%);
  z-index: 1000200; max-width: 40rem; padding: 6px 14px; border-radius: 0 0 8px 8px;
  background: #fff4e5; color: #5f370e; border: 1px solid #f5a623; border-top: 0;
  font: 500 0.9rem/1.4 sans-serif; box-shadow: 0 2px 6px rgba(0,0,0,.15); }
.ballast-offline[hidden] { display: none; }
body[data-boffline] .st-key-b-status, body[data-boffline] .st-key-b-status *,
body[data-boffline] [class*="--marker"], body[data-boffline] [class*="--marker"] * {
  visibility: hidden !important; }
"""

_SESSION = "_ballast_bridge_session"

_nav = st.components.v2.component(
    "ballast_nav", js=NAV_JS, css=NAV_CSS, isolate_styles=False
)
_bridge = st.components.v2.component("ballast_bridge", js=BRIDGE_JS)
_journal = st.components.v2.component("ballast_journal", js=JOURNAL_JS)


def nav(
    items: Sequence[Mapping[str, str]],
    current: str,
    on_nav: Callable[[], None],
    key: str = "ballast_nav",
) -> Any:
    """Mount the navigation (items: ``{name, title, icon, href}``)."""
    return _nav(
        key=key,
        data={"items": list(items), "current": current},
        on_nav_change=on_nav,
        height="content",
    )


def journal(
    *,
    user: str | None,
    meta: Mapping[str, Mapping[str, Any]],
    known: Mapping[str, Any],
    key: str,
) -> Any:
    """Mount the journal of a page's controlled widgets (invisible).

    Args:
        user: The user id (the journal is kept per user).
        meta: ``{css class: {key, kind, ...}}`` of the journaled widgets.
        known: The values the server holds for them (only differences are journaled).
        key: The element's key (one per page).
    """
    # Drawn at the end of every run of a page's fragment: the run completed (see
    # `ballast_ui.widgets.fragment_done`), whether it drew controlled widgets or not.
    fragment_done()
    return _journal(
        key=key,
        data={"user": user, "meta": dict(meta), "known": dict(known)},
        height=0,
    )


def bridge(
    *,
    user: str | None,
    acks: Mapping[str, Any],
    handoff: str | None,
    clear_cookie: bool,
    ready: bool,
    on_restore: Callable[[], None],
    key: str = "ballast_bridge",
) -> Any:
    """Mount the invisible browser bridge (journal, cookie hand-off, hotkeys)."""
    return _bridge(
        key=key,
        data={
            "user": user,
            "acks": dict(acks),
            "handoff": handoff,
            "clear_cookie": clear_cookie,
            "ready": ready,
            "offline_css": OFFLINE_CSS,
            # This Streamlit session (the journal is handed to each session once).
            "session": st.session_state.setdefault(_SESSION, secrets.token_hex(8)),
        },
        on_restore_change=on_restore,
        height=0,
    )
