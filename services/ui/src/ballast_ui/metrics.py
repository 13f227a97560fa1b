"""Rerun timing: every script or fragment run, by page and trigger.

The trigger is set by the callback that caused the run (`note_trigger`) and consumed
by the run that follows, so the label set stays small: ``app``, ``bootstrap``,
``nav``, ``history``, ``widget``, ``button``, ``poll``, ``journal``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Histogram

# Interactions must stay under 50 ms: fine buckets below, coarse above.
RERUN_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RERUN_SECONDS = Histogram(
    "ballast_ui_rerun_seconds",
    "Server-side duration of one Streamlit script or fragment run.",
    ["page", "trigger"],
    buckets=RERUN_BUCKETS,
)

TRIGGER_KEY = "_ballast_trigger"
TRIGGERS = frozenset(
    {"app", "bootstrap", "nav", "history", "widget", "button", "poll", "journal"}
)


def note_trigger(state: Any, trigger: str) -> None:
    """Remember what caused the next run (call from widget callbacks).

    Args:
        state: ``st.session_state`` (or any mutable mapping, in tests).
        trigger: One of `TRIGGERS`; anything else is recorded as ``app``.
    """
    state[TRIGGER_KEY] = trigger if trigger in TRIGGERS else "app"


def take_trigger(state: Any, default: str) -> str:
    """The trigger of the current run (and forget it)."""
    trigger = state.pop(TRIGGER_KEY, None)
    return str(trigger) if trigger else default


@contextmanager
def timed_run(page: str, trigger: str) -> Iterator[None]:
    """Observe the duration of the enclosed run into ``ballast_ui_rerun_seconds``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        RERUN_SECONDS.labels(page=page, trigger=trigger).observe(
            time.perf_counter() - start
        )
