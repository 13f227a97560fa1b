// A data editor's cell editor (glide-data-grid's overlay editor, which Streamlit's
// st.data_editor uses) decides what a key press commits in a timer each keydown sets:
// once the timer runs, if the editor is still open and a move was asked for (a ref
// that the last Enter or Tab set), it closes, committing the value of *that timer's*
// key: the typed value for Enter or Tab, nothing for any other key. A character typed
// and Enter pressed before the character's timer ran (the page busy, say drawing the
// server's answer to the row just added) runs the character's timer after Enter set
// the move: the editor closes committing nothing, and the value it showed is never
// sent (a third of fast commits into a new row here: `bench/ui.py`,
// table_commit_lost; a bare Streamlit app loses as many).
//
// So Enter and Tab pressed in a cell editor are held back one timer turn: the timers
// of the keys before them run first (timers of equal delay run in the order they were
// set), then the same key is sent again to the same element. tests/ui/
// test_frontend_node.py checks that the installed Streamlit's cell editor still
// decides in such a timer.
// The cell editor's root (drawn in a portal outside the grid).
export const CELL_EDITOR = '.gdg-clip-region';

// Whether `e` is a user's Enter or Tab keydown in a data editor's cell editor (an
// event sent again here is not: it is not trusted). Shift+Enter is not: it starts a
// new line in a text cell (the browser's own doing, which holding would prevent).
export function heldCommitKey(e) {
  return e.type === 'keydown'
    && e.isTrusted === true
    && ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab')
    && e.isComposing !== true
    && e.keyCode !== 229
    && typeof e.target?.closest === 'function'
    && e.target.closest(CELL_EDITOR) !== null;
}

// What a copy of key event `e` is made of.
export function keyInit(e) {
  return {
    key: e.key,
    code: e.code,
    location: e.location,
    repeat: e.repeat,
    shiftKey: e.shiftKey,
    altKey: e.altKey,
    ctrlKey: e.ctrlKey,
    metaKey: e.metaKey,
    bubbles: true,
    cancelable: true,
    composed: true,
  };
}

// Hold back Enter and Tab in cell editors on window `win` (see above).
export function holdCommitKeys(win) {
  win.addEventListener('keydown', (e) => {
    if (!heldCommitKey(e)) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    const { target } = e;
    const init = keyInit(e);
    win.setTimeout(() => {
      // An editor closed meanwhile (a click elsewhere) committed its value then.
      if (target.isConnected) target.dispatchEvent(new win.KeyboardEvent('keydown', init));
    }, 0);
  }, true);
}
