// The notes the browser draws at once, before the server confirms them: a field's
// "● modified" note, its form's "● N unsaved" marker and whether the form's Undo, Redo,
// Apply and Reset can be pressed follow the value the widget shows right after the
// user's event. The server's next completed run (the journal
// element drawn again) takes its own notes back (see journal.js).
//
// notes: {widget key: {saved, error, form}}: the value the form holds saved, whether
//   the note shows a validation error (then no guess: the server says what is wrong);
// forms: {form id: {marker: css class of the marker, count: dirty fields the server
//   counted, past/future: whether the server has undo/redo steps, write: whether the
//   user may save, buttons: {undo, redo, apply, reset: css class}}}; known: the values the server holds; pending: {widget key: value shown}
//   since the server's last answer.
import { same } from './journal_store.js';

/** 'modified' or 'clean' for a field note showing `value`; null: no guess. */
export function noteState(note, value) {
  if (!note || note.error) return null;
  return same(note.saved, value) ? 'clean' : 'modified';
}

/** The form's unsaved count with the pending values shown instead of the known ones. */
export function unsavedCount(formId, form, notes, known, pending) {
  let count = form.count;
  for (const [key, value] of Object.entries(pending)) {
    const note = notes[key];
    if (!note || note.form !== formId) continue;
    const before = !same(note.saved, known[key]);
    const after = !same(note.saved, value);
    count += (after ? 1 : 0) - (before ? 1 : 0);
  }
  return Math.max(0, count);
}

/** The marker's text and tone for `count` unsaved fields (as forms.form_toolbar). */
export function markerText(count) {
  return count
    ? { text: `● ${count} unsaved`, tone: 'orange' }
    : { text: '✓ no unsaved changes', tone: 'green' };
}

/**
 * Which of the form's toolbar buttons the server will enable once it has the pending
 * values: `{undo, redo, apply, reset}`, true for enabled (as forms.form_toolbar).
 *
 * A pending value the server does not hold yet is a change it will record: an undo
 * step, and no redo left. Pending values it holds already change nothing, so without
 * them (`pending` empty) this is the server's own state.
 */
export function toolbarState(formId, form, notes, known, pending) {
  const changed = Object.entries(pending).some(
    ([key, value]) => notes[key] && notes[key].form === formId && !same(known[key], value),
  );
  const count = unsavedCount(formId, form, notes, known, pending);
  return {
    undo: changed || Boolean(form.past),
    redo: !changed && Boolean(form.future),
    apply: Boolean(form.write) && count > 0,
    reset: count > 0,
  };
}

/** Whether the server's last run drew the form's button `name` enabled. */
export function serverEnables(formId, form, name) {
  return toolbarState(formId, form, {}, {}, {})[name];
}

/**
 * What to do with a click on a button the browser enabled before the server did
 * (the server ignores a click on a button its last run drew disabled): 'click' it
 * now, the server enables it too; 'drop' it, the server holds the values the click
 * came after and still says no; or 'wait' for a run that has them.
 *
 * queued: {form, name, after: {widget key: value shown at the click}}; form: the
 * server's state of that form; known: the values the server holds.
 */
export function queuedClick(queued, form, known) {
  if (!form) return 'drop';
  if (serverEnables(queued.form, form, queued.name)) return 'click';
  const seen = Object.entries(queued.after).every(([key, value]) => same(known[key], value));
  return seen ? 'drop' : 'wait';
}
