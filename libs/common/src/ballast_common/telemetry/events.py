"""``track``: product/usage events, logged, counted and handed to sinks."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, Counter

from ballast_common.contracts.events import (
    EVENT_NAME_PATTERN,
    KNOWN_EVENTS,
    MAX_EVENT_NAME_LENGTH,
    OTHER_EVENT,
)
from ballast_common.telemetry.context import (
    correlation_id_var,
    current_ids_or_bound,
    user_id_var,
)
from ballast_common.telemetry.errors import log_error
from ballast_common.telemetry.logging import get_logger
from ballast_common.telemetry.metrics import get_or_create
from ballast_common.telemetry.pii import mask_data

# The api's rule for event names (`EventIn`), so track() refuses nothing it stored.
_EVENT_NAME_RE = re.compile(EVENT_NAME_PATTERN)

_log = get_logger("ballast.events")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """A tracked event, as handed to sinks (and stored in the ``events`` table).

    Attributes:
        id: UUID4 string, unique per event.
        type: The validated event name.
        source: Which component emitted it (``ui``, ``api``, ``jobs``...).
        data: The masked properties.
        timestamp: When it was tracked (timezone-aware, UTC).
        user_id: The bound user id, if any.
        session_id: The client session id, if the caller passed one.
        correlation_id: The bound correlation id, if any.
        trace_id: The bound trace id, if any.
    """

    type: str
    data: dict[str, Any]
    source: str = "app"
    id: str = field(default_factory=_new_id)
    timestamp: datetime = field(default_factory=_utcnow)
    user_id: str | None = None
    session_id: str | None = None
    correlation_id: str | None = None
    trace_id: str | None = None


EventSink = Callable[[Event], None]

_sinks: list[EventSink] = []
_sinks_lock = threading.Lock()
# The names counted under their own label (see KNOWN_EVENTS); the rest count as "other".
_labelled: set[str] = set(KNOWN_EVENTS)


def register_event_names(*names: str) -> None:
    """Let ``ballast_events_total`` count these events under their own label.

    Raises:
        ValueError: A name is not a valid event name.
    """
    for name in names:
        validate_event_name(name)
    with _sinks_lock:
        _labelled.update(names)


def metric_label(event: str) -> str:
    """The ``event`` label an event is counted under: its name if known, else "other"."""
    return event if event in _labelled else OTHER_EVENT


def _events_counter() -> Counter:
    return get_or_create(
        "ballast_events_total",
        lambda: Counter(
            "ballast_events_total", "Tracked events.", ("event",), registry=REGISTRY
        ),
    )


def register_event_sink(fn: EventSink) -> EventSink:
    """Register a callable that receives every tracked :class:`Event`.

    Sinks run synchronously in the caller's thread, in registration order: keep
    them fast (write a row, put on a queue). A sink that raises is logged with
    :func:`~ballast_common.telemetry.errors.log_error` and skipped; ``track``
    never fails because of a sink. Usable as a decorator.

    Args:
        fn: The sink.

    Returns:
        ``fn`` unchanged.
    """
    with _sinks_lock:
        _sinks.append(fn)
    return fn


def clear_event_sinks() -> None:
    """Remove all registered sinks (process shutdown, tests)."""
    with _sinks_lock:
        _sinks.clear()


def validate_event_name(event: str) -> str:
    """Check an event name: snake_case segments, optionally dotted, ≤ 100 chars.

    Args:
        event: The candidate name.

    Returns:
        The name unchanged.

    Raises:
        ValueError: If the name is empty, too long or not snake_case/dotted.
    """
    if len(event) > MAX_EVENT_NAME_LENGTH or _EVENT_NAME_RE.fullmatch(event) is None:
        raise ValueError(
            f"invalid event name {event[:120]!r}: use snake_case segments separated by dots, "
            f"at most {MAX_EVENT_NAME_LENGTH} characters"
        )
    return event


def track(
    event: str,
    props: Mapping[str, Any] | None = None,
    *,
    source: str = "app",
    session_id: str | None = None,
) -> None:
    """Track a user or system event.

    Validates the name, masks ``props``, logs event ``"track"``, increments
    ``ballast_events_total{event}`` (unknown names under ``event="other"``, see
    `register_event_names`) and hands an :class:`Event` (with the ids of
    the bound context) to every registered sink.

    Args:
        event: Event name, e.g. ``"form_saved"`` or ``"jobs.cancel_requested"``.
        props: Event properties; masked before they go anywhere.
        source: Emitting component, stored on the event.
        session_id: Client session id (not a session token), if known.

    Raises:
        ValueError: If ``event`` is not a valid event name.
    """
    validate_event_name(event)
    masked: dict[str, Any] = mask_data(dict(props)) if props else {}
    record = Event(
        type=event,
        data=masked,
        source=source,
        user_id=user_id_var.get(),
        session_id=session_id,
        correlation_id=correlation_id_var.get(),
        trace_id=current_ids_or_bound()[0],
    )
    _log.info(
        "track",
        name=event,
        event_id=record.id,
        source=source,
        props=masked,
    )
    _events_counter().labels(event=metric_label(event)).inc()
    with _sinks_lock:
        sinks = list(_sinks)
    for sink in sinks:
        try:
            sink(record)
        except Exception as exc:
            log_error(
                exc, {"sink": getattr(sink, "__qualname__", repr(sink)), "event": event}
            )
