// The browser journal (ballast_ui.components.journal). Every controlled widget's value
// is read from the DOM right after each user event (typing not yet committed by
// Streamlit included) and kept in localStorage when it differs from what the server
// knows, until the api acknowledged it; a refresh at any moment loses nothing.
// The same reading draws the field's "modified" note, the form's unsaved marker and
// which of its Undo/Redo/Apply/Reset can be pressed at once (lib/notes_logic.js), until
// the server's next completed run draws its own.
import { stringWidgetStates } from './lib/backmsg.js';
import { keepEditsOnTheirWay } from './lib/edit_timers.js';
import {
  adoptClassEntries, journalKey, loadJournal, same, saveJournal,
} from './lib/journal_store.js';
import {
  markerText, noteState, queuedClick, serverEnables, toolbarState, unsavedCount,
} from './lib/notes_logic.js';
import { holdCommitKeys } from './lib/grid_keys.js';
import { denseRows, editedRows, hasEdits } from './lib/table_edits.js';
import {
  dateValue, numberValue, optionValue, optionValues, sliderValue,
} from './lib/widget_values.js';

// A toolbar button's <button>s: one with a tooltip has a hidden copy (for its width).
const buttonsOf = (cls) => document.querySelectorAll('.' + cls + ' button');

export default function (component) {
  const { data } = component;
  const w = window;
  w.__ballastMeta = Object.assign(w.__ballastMeta || {}, data.meta || {});
  w.__ballastKnown = Object.assign(w.__ballastKnown || {}, data.known || {});
  w.__ballastUser = data.user;
  w.__ballastNotes = Object.assign(w.__ballastNotes || {}, data.notes || {});
  w.__ballastForms = Object.assign(w.__ballastForms || {}, data.forms || {});
  // A completed run of the server drew its notes: the browser's guesses go.
  w.__ballastPending = {};
  for (const el of document.querySelectorAll('[data-bnote], [data-btext]')) {
    delete el.dataset.bnote;
    delete el.dataset.btext;
    delete el.dataset.btone;
    el.style.removeProperty('--btext');
  }
  // Toolbar buttons the browser enabled or disabled: back to what this run says (the
  // server's own drawing leaves a button alone when its state did not change).
  for (const [cls, [formId, name]] of Object.entries(w.__ballastTouched || {})) {
    const form = w.__ballastForms[formId];
    if (!form) continue;
    const on = serverEnables(formId, form, name);
    for (const button of buttonsOf(cls)) button.disabled = !on;
  }
  w.__ballastTouched = {};
  // A click on a button enabled here before the server did, kept until a run of the
  // server that enables it too (then it is sent) or that says no to it (then dropped).
  const queued = w.__ballastQueued;
  const action = queued && queuedClick(queued, w.__ballastForms[queued.form], w.__ballastKnown);
  if (action !== 'wait') w.__ballastQueued = null;
  if (action === 'click') {
    // After React drew this run's toolbar: its click handler sends the trigger.
    setTimeout(() => {
      const button = buttonsOf(queued.cls)[0];
      if (button && !button.disabled) button.click();
    }, 0);
  }
  // Typing journaled before this element arrived is kept under 'cls:<class>': name it.
  if (data.user) {
    try {
      const j = JSON.parse(localStorage.getItem(journalKey(data.user)) || '{}');
      if (adoptClassEntries(j, w.__ballastMeta)) localStorage.setItem(journalKey(data.user), JSON.stringify(j));
    } catch (err) { /* unreadable or full: left as it is */ }
  }
  if (w.__ballastJournal) return;
  w.__ballastJournal = true;
  // A cell committed with Enter or Tab right after typing reaches the data editor
  // (lib/grid_keys.js).
  holdCommitKeys(w);
  const pick = (box, sel) => box.querySelector(sel);
  // Read a widget's value from the DOM, in the form the server stores it.
  const read = (m, box) => {
    let el;
    switch (m.kind) {
      case 'text':
        el = pick(box, 'textarea, input');
        return el ? { v: el.value } : null;
      case 'int': case 'float':
        el = pick(box, 'input');
        return el ? numberValue(m.kind, el.value) : null;
      case 'bool':
        el = pick(box, 'input[type="checkbox"]');
        return el ? { v: el.checked } : null;
      case 'slider':
        el = pick(box, 'input[type="range"]');
        return el ? sliderValue(m.int, el.value) : null;
      case 'select':
        el = pick(box, 'input[role="combobox"]');
        return el ? optionValue(m, el.value) : null;
      case 'multi':
        return optionValues(m, Array.from(box.querySelectorAll('[data-tag]'), (tag) => tag.getAttribute('aria-label')));
      case 'date': {
        const part = (t) => {
          const s = box.querySelector('[role="spinbutton"][data-type="' + t + '"]');
          return s && s.hasAttribute('aria-valuenow') ? Number(s.getAttribute('aria-valuenow')) : null;
        };
        return dateValue(part('year'), part('month'), part('day'));
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
  // Draw the note of a field showing `value` and its form's marker, as the server
  // will. The note is the element right after the widget's (forms.field_note).
  const guess = (key, value, box) => {
    const note = w.__ballastNotes[key];
    // Shown as the server knows it, and no guess since its last run: its notes hold
    // (a late re-reading after the server's answer guesses nothing).
    if (!(key in w.__ballastPending) && same(w.__ballastKnown[key], value)) return;
    const state = noteState(note, value);
    if (!state) return;
    w.__ballastPending[key] = value;
    const host = box.nextElementSibling;
    if (host && host.querySelector('[data-testid="stCaptionContainer"]')) host.dataset.bnote = state;
    const form = w.__ballastForms[note.form];
    if (!form) return;
    const marker = document.querySelector('.' + form.marker);
    if (marker) {
      const shown = markerText(unsavedCount(note.form, form, w.__ballastNotes, w.__ballastKnown, w.__ballastPending));
      marker.dataset.btext = shown.text;
      marker.dataset.btone = shown.tone;
      // CSS attr() reads the pseudo-element's own element (the marker's <p>): the
      // text goes down to it as a custom property.
      marker.style.setProperty('--btext', JSON.stringify(shown.text));
    }
    // The buttons as the server will draw them: a click on an Undo enabled here reaches
    // the server after the change it undoes (both travel on the one WebSocket, in order).
    const can = toolbarState(note.form, form, w.__ballastNotes, w.__ballastKnown, w.__ballastPending);
    for (const [name, cls] of Object.entries(form.buttons || {})) {
      for (const button of buttonsOf(cls)) {
        if (button.disabled === !can[name]) continue;
        w.__ballastTouched[cls] = [note.form, name];
        button.disabled = !can[name];
      }
    }
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
    guess(m.key, got.v, box);
    const j = loadJournal(localStorage, user);
    const entry = j[m.key];
    if (entry ? same(entry.v, got.v) : same(w.__ballastKnown[m.key], got.v)) return;
    j[m.key] = { v: got.v, t: Date.now() };
    saveJournal(localStorage, user, j);
  };
  w.__ballastScan = scan;
  // Data editors. Their cells are drawn on a canvas, so instead of the DOM the journal
  // reads the edit state the browser sends to the server (see lib/backmsg.js) and
  // applies it to the rows the editor started from (`meta.base`), as the server does.
  // A state is taken only when it differs from the last one sent for that widget and
  // holds edits: a state resent unchanged, or an editor just reset, may belong to rows
  // the server has replaced since.
  const sentTables = {};
  const journalTables = (bytes) => {
    const user = w.__ballastUser;
    const tables = Object.values(w.__ballastMeta).filter((m) => m.kind === 'table');
    if (!user || !tables.length) return;
    for (const [wid, text] of stringWidgetStates(bytes)) {
      const m = tables.find((t) => wid.endsWith('-' + t.key));
      if (!m || sentTables[wid] === text) continue;
      sentTables[wid] = text;
      const st = JSON.parse(text);
      // No edits: the editor was reset to new rows, which this element may not have yet.
      if (!hasEdits(st)) continue;
      const rows = editedRows(m.columns, m.base, st);
      const j = loadJournal(localStorage, user);
      const entry = j[m.key];
      if (entry ? same(entry.v, rows) : same(denseRows(m.columns, w.__ballastKnown[m.key] || []), rows)) continue;
      j[m.key] = { v: rows, t: Date.now() };
      saveJournal(localStorage, user, j);
    }
  };
  // A data editor's edit still on its way to the server when the page goes (refresh,
  // closed tab) is sent then: what is not sent is not journaled either (see
  // lib/edit_timers.js).
  w.addEventListener('pagehide', keepEditsOnTheirWay(w));
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      if (data instanceof Uint8Array) journalTables(data);
      else if (data instanceof ArrayBuffer) journalTables(new Uint8Array(data));
    } catch (err) { /* never in the way of the message */ }
    return send.call(this, data);
  };
  // A click on a button the server's last run drew disabled would be ignored by it:
  // it waits for the run that has the change it follows (see above).
  document.addEventListener('click', (e) => {
    const box = e.target instanceof Element && e.target.closest('[class*="st-key-"]');
    const cls = box && Array.from(box.classList).find((c) => c in w.__ballastTouched);
    if (!cls) return;
    const [formId, name] = w.__ballastTouched[cls];
    const form = w.__ballastForms[formId];
    if (form && serverEnables(formId, form, name)) return;
    e.preventDefault();
    e.stopPropagation();
    w.__ballastQueued = { cls, form: formId, name, after: { ...w.__ballastPending } };
  }, true);
  const enter = (e) => { const c = widgetOf(e.target); if (c) w.__ballastActive = c; };
  for (const ev of ['pointerdown', 'focusin', 'keydown']) document.addEventListener(ev, enter, true);
  // The widget a user event went into is watched for a moment: React draws its new
  // state (a checkbox's tick, an option picked) a little after the event, and the
  // journal reads it the moment it is drawn, not at the next timer.
  const watcher = new MutationObserver(() => scan());
  let unwatch = null;
  const watch = () => {
    const cls = w.__ballastActive;
    const box = cls && document.querySelector('.' + cls);
    if (!box) return;
    watcher.disconnect();
    watcher.observe(box, { attributes: true, childList: true, subtree: true, characterData: true });
    clearTimeout(unwatch);
    unwatch = setTimeout(() => watcher.disconnect(), 1500);
  };
  const soon = (e) => {
    enter(e);
    scan();
    watch();
    for (const ms of [0, 40, 150, 400, 1000]) setTimeout(scan, ms);
  };
  for (const ev of ['input', 'change', 'click', 'keyup', 'pointerup']) {
    document.addEventListener(ev, soon, true);
  }
}
