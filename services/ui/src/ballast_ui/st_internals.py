"""Every Streamlit internal the UI reads, in one place, with the versions it was checked on.

Streamlit has no public API for three things the Workbench needs:

- which script run is current (a whole-app run and each fragment rerun start anew),
  for the phantom-edit guard in `ballast_ui.widgets`;
- which fragment is being drawn;
- whether the browser's back/forward started the run (`ballast_ui.router`).

Each is read here and nowhere else. One Streamlit race is also mended here
(`keep_output_of_finished_runs`): the output of a run that finished just before its
ScriptRunner was replaced was dropped (a navigation whose new URL never arrived). And
one cost (`lazy_filtered_state`): each text, number, select, slider or date widget read
every value of the session to look at its own one.
`TESTED_VERSIONS` lists the Streamlit releases whose internals these functions were
checked against; `tests/ui/test_st_internals.py`
runs each against the installed Streamlit (and fails on a release not listed), and the
UI logs a warning at start-up when it runs on another one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import streamlit as st
from streamlit.runtime.app_session import AppSession
from streamlit.runtime.scriptrunner import (
    ScriptRunner,
    ScriptRunnerEvent,
    get_script_run_ctx,
)
from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType
from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState
from streamlit.runtime.state import session_state_proxy
from streamlit.runtime.state.common import is_element_id
from streamlit.runtime.state.safe_session_state import SafeSessionState
from streamlit.runtime.state.session_state import STREAMLIT_INTERNAL_KEY_PREFIX

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


# Set on a ScriptRunner whose script thread has nothing left to run.
_FINISHED = "_ballast_finished"
_STOP_ASKED = "_ballast_stop_asked"
_PATCHED = "_ballast_keeps_finished_runs"
# Streamlit's own functions the mends replace (read by the mends and by their tests).
ORIGINALS: dict[str, Any] = {}


def _runner_is_done(runner: ScriptRunner) -> bool:
    """Whether ``runner``'s thread finished its runs (it stops taking requests then)."""
    requests = getattr(runner, "_requests", None)
    return bool(
        requests is not None
        and getattr(requests, "_state", None) == ScriptRequestType.STOP
    )


def keep_output_of_finished_runs() -> bool:
    """Deliver the output of a run that finished just before its ScriptRunner was replaced.

    A ScriptRunner posts each message of a run to the session's event loop and, once the
    run is over and nothing else was asked, stops taking requests. A rerun request that
    reaches the loop before those posts were handled is refused, so the session starts a
    new ScriptRunner, and then ignores every post still queued from the old one: the
    finished run's elements and URL change never reach the browser. Fragments that rerun
    on a timer (the status poll, the Jobs page) make this frequent: a navigation ran on the
    server while the browser kept the old URL. The old runner's posts were all queued
    before the new one existed, so handling them as the session's own keeps the order.
    Only a runner that finished its runs is believed: one stopped mid-run (the Stop
    button, a full rerun interrupting it) still has posts to come after the new
    runner's, which Streamlit rightly ignores, as it does every runner's SHUTDOWN.

    Returns:
        ``True`` if this call installed it (``False``: it already was).
    """
    if getattr(AppSession, _PATCHED, False):
        return False
    request_rerun = ScriptRunner.request_rerun
    request_stop = ScriptRunner.request_stop
    handle = AppSession._handle_scriptrunner_event_on_event_loop
    ORIGINALS.update(
        request_rerun=request_rerun, request_stop=request_stop, handle=handle
    )

    def rerun(self: ScriptRunner, rerun_data: Any) -> bool:
        accepted = request_rerun(self, rerun_data)
        if not accepted and not getattr(self, _STOP_ASKED, False):
            setattr(self, _FINISHED, True)
        return accepted

    def stop(self: ScriptRunner) -> None:
        if not getattr(self, _STOP_ASKED, False) and _runner_is_done(self):
            setattr(self, _FINISHED, True)
        else:
            setattr(self, _STOP_ASKED, True)
        request_stop(self)

    def on_event(
        self: AppSession, sender: Any, event: Any, *args: Any, **kw: Any
    ) -> None:
        current = self._scriptrunner
        if (
            sender is not None
            and current is not None
            and sender is not current
            and event != ScriptRunnerEvent.SHUTDOWN
            and getattr(sender, _FINISHED, False)
        ):
            sender = current
        handle(self, sender, event, *args, **kw)

    ScriptRunner.request_rerun = rerun  # type: ignore[method-assign]
    ScriptRunner.request_stop = stop  # type: ignore[method-assign]
    AppSession._handle_scriptrunner_event_on_event_loop = on_event  # type: ignore[method-assign]
    setattr(AppSession, _PATCHED, True)
    return True


class FilteredState(Mapping[str, Any]):
    """`SessionState.filtered_state`, each value read when asked for.

    Streamlit's own builds a dict of every value in the session (every keyed widget of
    every page the Workbench keeps drawn, and the app's own entries: about 140) for each
    text, number, select, slider and date widget drawn, which only looks up its own key
    in it: over a third of a project page's run. A user key is answered by the session
    state itself, as the dict would answer it (the same lookup, the same presented
    value); anything else (iterating, a raw widget id, an internal key) by the whole
    dict, built once.
    """

    __slots__ = ("_safe", "_whole")

    def __init__(self, safe: SafeSessionState) -> None:
        self._safe = safe
        self._whole: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._whole is None:
            self._whole = dict(ORIGINALS["filtered_state"].fget(self._safe))
        return self._whole

    @staticmethod
    def _user_key(key: object) -> bool:
        return (
            isinstance(key, str)
            and not is_element_id(key)
            and not key.startswith(STREAMLIT_INTERNAL_KEY_PREFIX)
        )

    def __contains__(self, key: object) -> bool:
        if not self._user_key(key):
            return key in self._all()
        with self._safe._lock:
            return key in self._safe._state

    def __getitem__(self, key: str) -> Any:
        if not self._user_key(key):
            return self._all()[key]
        with self._safe._lock:
            return self._safe._state[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


_LAZY = "_ballast_lazy_filtered_state"
# Streamlit's own property (the whole dict, built under the session's lock) and
# ``to_dict``: `FilteredState` reads the first whether the view is installed or not.
ORIGINALS.update(
    filtered_state=SafeSessionState.filtered_state,
    to_dict=session_state_proxy.SessionStateProxy.to_dict,
)


def lazy_filtered_state() -> bool:
    """Make ``filtered_state`` a `FilteredState` (``to_dict`` still gives a dict).

    Returns:
        ``True`` if this call installed it (``False``: it already was).
    """
    if getattr(SafeSessionState, _LAZY, False):
        return False

    def filtered_state(self: SafeSessionState) -> Mapping[str, Any]:
        return FilteredState(self)

    def to_dict(_self: session_state_proxy.SessionStateProxy) -> dict[str, Any]:
        return dict(session_state_proxy.get_session_state().filtered_state)

    SafeSessionState.filtered_state = property(filtered_state)  # type: ignore[assignment]
    session_state_proxy.SessionStateProxy.to_dict = to_dict  # type: ignore[method-assign,assignment]
    setattr(SafeSessionState, _LAZY, True)
    return True
