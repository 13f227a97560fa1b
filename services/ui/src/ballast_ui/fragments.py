"""Page fragments, the fragment of a form inside one, and the journal each draws.

Every page is drawn in a fragment of its own (`ballast_ui.app`): a widget on a page
reruns that page only. A page whose form shares it with heavier, independent parts (the
project page: a data editor, the sharing list) draws the form in a fragment nested in
the page's (`form_fragment`): a change to one of the form's fields reruns the form -
its toolbar, conflict view, fields and notes - and not the rest of the page. What the
form's buttons change beyond the form (a save, an undo of a table edit) reruns the
whole page (`forms.form_toolbar`'s ``rerun``).

Each fragment that draws controlled widgets ends with a journal element of its own
(`draw_journal`): the browser's journal gets the widgets a run drew from the element
that run drew, and its redraw tells the browser that the server's notes are in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import streamlit as st

from ballast_ui import components
from ballast_ui.client import ApiUnavailable
from ballast_ui.forms import browser_notes
from ballast_ui.metrics import take_trigger, timed_run
from ballast_ui.router import FULL_RERUN
from ballast_ui.st_internals import current_run
from ballast_ui.state import values
from ballast_ui.widgets import IN_PAGE_RUN, journal_drawn, nest_in_page

# The fragments built so far (one per key, built once per process).
_FRAGMENTS: dict[str, Callable[[], None]] = {}


def page_fragment_key(name: str) -> str:
    """The fragment key of page `name` (for `st.rerun(key)` from a callback)."""
    return f"page-{name}"


def _draw_key(key: str) -> str:
    return f"_ballast_draw::{key}"


def fragment_for(key: str, draw: Callable[[], None]) -> Callable[[], None]:
    """The fragment `key` (built on first use) that runs the latest `draw`.

    The fragment's body looks its drawing function up in the session: a fragment's
    rerun runs the function the last run of its parent gave it, with that run's
    values, not the one the fragment was built with.
    """
    frag = _FRAGMENTS.get(key)
    if frag is None:

        def body() -> None:
            st.session_state[_draw_key(key)]()

        body.__qualname__ = f"fragment_{key}"
        frag = st.fragment(body, key=key)
        _FRAGMENTS[key] = frag
    st.session_state[_draw_key(key)] = draw
    return frag


def draw_journal(name: str) -> None:
    """The browser journal of the widgets this run drew (for page or form `name`)."""
    ctx: Any = st.session_state["_ballast_ctx"]
    # The widgets this run drew: the browser keeps what earlier runs sent.
    meta = journal_drawn()
    store = values()
    keys = {m["key"] for m in meta.values()}
    all_notes, all_markers = browser_notes()
    notes = {k: n for k, n in all_notes.items() if k in keys}
    forms = {n["form"] for n in notes.values()}
    with st.container(key=f"bjournal-{name}"):
        components.journal(
            user=str(ctx.user.id) if ctx.user else None,
            meta=meta,
            known={k: store.get(k) for k in keys},
            notes=notes,
            markers={f: m for f, m in all_markers.items() if f in forms},
            key=f"ballast_journal_{name}",
        )


def run_fragment(
    page: str,
    journal: str,
    draw: Callable[[], None],
    *,
    part_of: str,
    wrap: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> None:
    """The body of a page's or a form's fragment: `draw` inside `wrap`, then journal
    element `journal`.

    Drawn by a bigger run (session flag `part_of` set: a full run for a page, the page's
    run for a form), it is part of that run. Run on its own (a widget of it changed), it
    is a run of its own: timed in ``ballast_ui_rerun_seconds`` under `page` with the
    run's trigger, and an unreachable api leaves a warning (the edits are kept). A page
    change a callback asked for (`FULL_RERUN`) reruns the whole app first.
    """
    if st.session_state.pop(FULL_RERUN, False):
        st.rerun(scope="app")
    if st.session_state.get(part_of):
        with wrap():
            draw()
        draw_journal(journal)
        return
    with timed_run(page, take_trigger(st.session_state, "widget")):
        try:
            with wrap():
                draw()
        except ApiUnavailable:
            st.warning("The server is unreachable; your edits are kept.")
        draw_journal(journal)


def form_fragment(page: str, name: str, draw: Callable[[], None]) -> None:
    """Draw `draw` (a form) in fragment `name`, nested in page `page`'s fragment: part
    of the page's run when that draws it, a run of its own (`run_fragment`) when a
    field of the form changed."""

    def run() -> None:
        nest_in_page()
        run_fragment(page, name, draw, part_of=IN_PAGE_RUN)

    fragment_for(name, run)()


@contextmanager
def page_run() -> Iterator[None]:
    """Mark the enclosed drawing as a run of the current page's fragment: the
    fragments nested in it run as part of it (`form_fragment`)."""
    st.session_state[IN_PAGE_RUN] = current_run()[1]
    try:
        yield
    finally:
        st.session_state.pop(IN_PAGE_RUN, None)


__all__ = [
    "draw_journal",
    "form_fragment",
    "fragment_for",
    "page_fragment_key",
    "page_run",
    "run_fragment",
]
