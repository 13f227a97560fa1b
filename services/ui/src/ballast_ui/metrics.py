"""Rerun timing: every script or fragment run, by page and trigger.

The trigger is set by the callback that caused the run (`note_trigger`) and consumed
by the run that follows, so the label set stays small: ``app``, ``bootstrap``,
``nav``, ``history``, ``widget``, ``button``, ``poll``, ``journal``.

Each user action is also a span (when tracing is on): the callback that notes the
trigger starts it, so the api calls the callback makes (a save, a job started) are its
children, and the run that follows ends it, named after trigger and page
(``ui button projects``). Polls are not user actions and get none.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Histogram

from ballast_common.telemetry.tracing import get_tracer, tracing_enabled

# Interactions must stay under 50 ms: fine buckets below, coarse above; finest (2.5 ms)
# from 5 to 15 ms, where a widget's rerun lands: a p95 read from the buckets (dashboards,
# bench/ui.py) is interpolated inside one, and a 10 ms wide bucket left it +-5 ms off.
RERUN_BUCKETS = (
    0.005,
    0.0075,
    0.01,
    0.0125,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

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


# Triggers that are no user action: no span.
NOT_ACTIONS = frozenset({"poll"})

# The user action in progress on this script thread: its span and context token.
_action: ContextVar[tuple[trace.Span, object] | None] = ContextVar(
    "ballast_ui_action", default=None
)


def note_trigger(state: Any, trigger: str) -> None:
    """Remember what caused the next run (call from widget callbacks), and start the
    user action's span.

    Args:
        state: ``st.session_state`` (or any mutable mapping, in tests).
        trigger: One of `TRIGGERS`; anything else is recorded as ``app``.
    """
    trigger = trigger if trigger in TRIGGERS else "app"
    state[TRIGGER_KEY] = trigger
    start_action(trigger)


def start_action(trigger: str) -> None:
    """Start (and make current) the span of a user action, unless one is in progress."""
    if trigger in NOT_ACTIONS or not tracing_enabled() or _action.get() is not None:
        return
    span = get_tracer("ballast_ui").start_span(
        f"ui {trigger}", attributes={"ballast.ui.trigger": trigger}
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    _action.set((span, token))


def end_action(page: str, trigger: str) -> None:
    """End the user action in progress (if any), named after its trigger and page."""
    current = _action.get()
    if current is None or trigger in NOT_ACTIONS:
        return
    _action.set(None)
    span, token = current
    if span.is_recording():
        # The run's trigger, as in the rerun histogram (the last callback's note).
        span.update_name(f"ui {trigger} {page}")
        span.set_attributes({"ballast.ui.trigger": trigger, "ballast.ui.page": page})
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]


def take_trigger(state: Any, default: str) -> str:
    """The trigger of the current run (and forget it)."""
    trigger = state.pop(TRIGGER_KEY, None)
    return str(trigger) if trigger else default


@contextmanager
def timed_run(page: str, trigger: str) -> Iterator[None]:
    """Observe the duration of the enclosed run into ``ballast_ui_rerun_seconds``;
    a user action's run ends (or is) the action's span."""
    start = time.perf_counter()
    start_action(trigger)
    try:
        yield
    finally:
        RERUN_SECONDS.labels(page=page, trigger=trigger).observe(
            time.perf_counter() - start
        )
        end_action(page, trigger)
