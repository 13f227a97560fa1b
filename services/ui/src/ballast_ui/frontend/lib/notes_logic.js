// The notes the browser draws at once, before the server confirms them: a field's
// "● modified" note and its form's "● N unsaved" marker follow the value the widget
// shows right after the user's event. The server's next completed run (the journal
// element drawn again) takes its own notes back (see journal.js).
//
// notes: {widget key: {saved, error, form}}: the value the form holds saved, whether
//   the note shows a validation error (then no guess: the server says what is wrong);
// forms: {form id: {marker: css class of the marker, count: dirty fields the server
//   counted}}; known: the values the server holds; pending: {widget key: value shown}
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
