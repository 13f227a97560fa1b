"""Browser-side elements (``st.components.v2``: ES modules, no build step, no iframe).

- `nav`: the page navigation. A click shows the target page at once in the browser
  (every permitted page is rendered and kept; CSS shows the one named by
  ``body[data-bpage]``), then tells the server, whose answer sets the URL.
- `journal`: the browser journal. Every controlled widget's value is read from the
  DOM right after each user event (typing not yet committed by Streamlit included) and
  kept in ``localStorage`` when it differs from what the server knows, until the api
  acknowledged it; a refresh at any moment loses nothing.
- `bridge`: drops acknowledged journal entries, hands unacknowledged ones back after a
  refresh, the offline banner, the session-cookie hand-off, and the Ctrl+Z /
  Ctrl+Shift+Z hotkeys.
- `upload`: the Data page's direct upload: the file's parts go from the browser
  straight to the object store (presigned URLs, through the ui's ``/_ballast/uploads``
  routes), with a progress bar; a refresh resumes it (`ballast_ui.uploads`).
- `file_field`: the file field of `ballast_ui.widgets.s_file`: the chosen file is read
  in the browser and sent on the session's WebSocket (no upload URL of one process),
  so it works behind replicas without session affinity.

The browser code lives in ``ballast_ui/frontend/`` (``nav.js``, ``journal.js``,
``bridge.js``, their pure logic in ``lib/``, unit-tested with node's test runner in
``services/ui/frontend``). ``ballast_ui/pyproject.toml`` declares that directory as the
components' ``asset_dir``, so Streamlit serves it and the JavaScript is named by path:
the modules import their ``lib/`` modules by relative URL. The CSS is passed as text:
a file-backed stylesheet is a ``<link>`` that loads after the element is drawn (the
navigation would be drawn unstyled first, then move), inline CSS is a ``<style>``.
Ref: https://docs.streamlit.io/develop/api-reference/custom-components/st.components.v2.component
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import streamlit as st

from ballast_ui.widgets import fragment_done

if TYPE_CHECKING:
    from streamlit.components.v2.types import ComponentRenderer

# The ``[project] name`` of the component manifest (ballast_ui/pyproject.toml):
# Streamlit names a manifest's components "<project>.<component>".
PROJECT = "ballast-ui"
FRONTEND = resources.files("ballast_ui") / "frontend"


def asset_text(name: str) -> str:
    """The text of a file in the components' asset directory."""
    return (FRONTEND / name).read_text(encoding="utf-8")


NAV_CSS = asset_text("nav.css")
# The offline banner's style; the bridge adds it to the page once (see bridge.js).
OFFLINE_CSS = asset_text("offline.css")

_lock = threading.Lock()
_elements: dict[str, ComponentRenderer] = {}


def _element(name: str) -> ComponentRenderer:
    """The mounting command of component ``name``, registered on first use.

    Not at import: a file-backed component needs the manifest Streamlit's runtime
    scanned, and this module is imported without a runtime too (tests, tools).
    Each mount registers the component on the runtime it runs in when missing there.
    """
    found = _elements.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _elements:
            if name == "nav":
                _elements[name] = st.components.v2.component(
                    f"{PROJECT}.nav", js="nav.js", css=NAV_CSS, isolate_styles=False
                )
            else:
                _elements[name] = st.components.v2.component(
                    f"{PROJECT}.{name}", js=f"{name}.js"
                )
        return _elements[name]


_SESSION = "_ballast_bridge_session"
_RUNS = itertools.count()


def nav(
    items: Sequence[Mapping[str, str]],
    current: str,
    on_nav: Callable[[], None],
    key: str = "ballast_nav",
) -> Any:
    """Mount the navigation (items: ``{name, title, icon, href}``)."""
    return _element("nav")(
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
    notes: Mapping[str, Mapping[str, Any]] | None = None,
    markers: Mapping[str, Mapping[str, Any]] | None = None,
    key: str,
) -> Any:
    """Mount the journal of a page's controlled widgets (invisible).

    Args:
        user: The user id (the journal is kept per user).
        meta: ``{css class: {key, kind, ...}}`` of the journaled widgets.
        known: The values the server holds for them (only differences are journaled).
        notes: ``{key: {saved, error, form}}`` of the fields with a note
            (`ballast_ui.forms.field_note`): the browser draws "● modified" there at
            once after a change, until this element is drawn again (the server's run
            completed and drew its own).
        markers: ``{form id: {marker, count, past, future, write, buttons}}``: the
            forms' unsaved markers and which of their Undo, Redo, Apply and Reset
            buttons can be pressed, drawn the same way.
        key: The element's key (one per page).
    """
    # Drawn at the end of every run of a page's fragment: the run completed (see
    # `ballast_ui.widgets.fragment_done`), whether it drew controlled widgets or not.
    fragment_done()
    return _element("journal")(
        key=key,
        data={
            "user": user,
            "meta": dict(meta),
            "known": dict(known),
            "notes": dict(notes or {}),
            "forms": dict(markers or {}),
            # New in every run: the element is drawn again even when nothing else
            # changed, so the browser's guesses always give way to the server's notes.
            "run": next(_RUNS),
        },
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
    return _element("bridge")(
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


def upload(
    *,
    user: str | None,
    project: str | None,
    name: str,
    enabled: bool,
    on_done: Callable[[], None],
    key: str = "ballast_upload",
) -> Any:
    """Mount the direct upload (file field, Upload/Cancel, progress bar, status line).

    Args:
        user: The user id (unfinished uploads are remembered per user, to resume).
        project: The project the dataset goes into (None: none).
        name: The dataset's name ("" : the file's name).
        enabled: Whether the user may upload.
        on_done: Called when an upload completed; ``st.session_state[key].done`` is
            ``{"dataset": id, "job": id}``.
    """
    return _element("upload")(
        key=key,
        data={"user": user, "project": project, "name": name, "enabled": enabled},
        on_done_change=on_done,
        height=UPLOAD_HEIGHT,
    )


# Fixed: the element never changes the page's layout while it works.
UPLOAD_HEIGHT = 112
# Label, the input row and the status line, whatever they say.
FILE_HEIGHT = 96


def file_field(
    *,
    label: str,
    kept: Mapping[str, Any] | None,
    accept: Sequence[str],
    inline_limit: int,
    max_bytes: int,
    disabled: bool,
    problem: Mapping[str, Any] | None,
    on_file: Callable[[], None],
    key: str,
) -> Any:
    """Mount a file field.

    Args:
        label: Its label.
        kept: ``{name, size}`` of the file the server holds (None: none).
        accept: The allowed extensions (empty: any).
        inline_limit: Files up to this many bytes are sent with their content; larger
            ones by name, size, type and SHA-256 only.
        max_bytes: Larger files are refused in the browser (0: no limit).
        disabled: Whether the field is read-only.
        problem: ``{text, at}``: why the server refused the last file (shown once).
        on_file: Called when a file was chosen or removed; ``st.session_state[key]
            .file`` is ``{name, size, type, sha256, content_b64}`` or ``{removed}``.
        key: The element's key.
    """
    return _element("file")(
        key=key,
        data={
            "label": label,
            "kept": dict(kept) if kept else None,
            "accept": list(accept),
            "inline_limit": inline_limit,
            "max_bytes": max_bytes,
            "disabled": disabled,
            "problem": dict(problem) if problem else None,
            "key": key,
        },
        on_file_change=on_file,
        height=FILE_HEIGHT,
    )
