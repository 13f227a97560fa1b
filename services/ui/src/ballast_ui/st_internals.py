"""Every Streamlit internal the UI reads, in one place, with the versions it was checked on.

Streamlit has no public API for three things the Workbench needs:

- which script run is current (a whole-app run and each fragment rerun start anew),
  for the phantom-edit guard in `ballast_ui.widgets`;
- which fragment is being drawn;
- whether the browser's back/forward started the run (`ballast_ui.router`).

Each is read here and nowhere else. `TESTED_VERSIONS` lists the Streamlit releases
whose internals these functions were checked against; `tests/ui/test_st_internals.py`
runs each against the installed Streamlit (and fails on a release not listed), and the
UI logs a warning at start-up when it runs on another one.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState

from ballast_common.telemetry import get_logger

# Major.minor releases whose internals the functions below were checked against.
TESTED_VERSIONS = ("1.67",)


def streamlit_version() -> str:
    """The running Streamlit's major.minor version."""
    return ".".join(st.__version__.split(".")[:2])


def untested_version() -> str | None:
    """A warning when the running Streamlit is not one of `TESTED_VERSIONS`."""
    version = streamlit_version()
    if version in TESTED_VERSIONS:
        return None
    return (
        f"Streamlit {st.__version__} is not one the UI's internals were checked on "
        f"({', '.join(TESTED_VERSIONS)}): run tests/ui/test_st_internals.py"
    )


def warn_if_untested() -> str | None:
    """Log `untested_version`'s warning, if any (the UI server calls this at start)."""
    message = untested_version()
    if message is not None:
        get_logger(__name__).warning("streamlit_untested", message=message)
    return message


def current_run() -> tuple[object | None, str | None]:
    """The current script run and the fragment being drawn.

    A run is told apart by the identity of the run context's cursor map, which
    Streamlit makes anew when a run, or a fragment's rerun, starts. The fragment id is
    the one Streamlit stamps on the elements drawn (``None`` outside any fragment).
    Outside a script run: ``(None, None)``.
    """
    ctx = get_script_run_ctx()
    if ctx is None:
        return None, None
    try:
        fragment = ThreadState.get().fragment_id
    except RuntimeError:
        fragment = None
    return ctx.cursors, fragment


def is_history_navigation() -> bool:
    """Whether the current run was started by the browser's back/forward."""
    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.is_history_navigation)


def session_id() -> str | None:
    """The Streamlit session's id (one browser tab's connection), outside a run None."""
    ctx = get_script_run_ctx()
    return None if ctx is None else str(ctx.session_id)
