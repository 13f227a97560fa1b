"""Product events of the Workbench (`track`), sent to the api in the background.

A user's journey (signed in, pages viewed, project opened and saved, job started,
dataset imported) is recorded where the api keeps every event: `POST /v1/events`
stores it masked and counts it in ``ballast_events_total{event}``, which the
dashboard's business panels read. The UI never counts them itself (that would count
each event twice).

`EventSender.track` returns at once: a rerun never waits for analytics. One
background thread sends what was queued every ``flush_s``, one batch per api client
(each user's token), at most ``max_batch`` events a request. Events are best effort:
an unreachable api keeps them for ``tries`` sends, a refused batch (signed out, no
permission) is dropped, and at most ``max_queued`` events wait (the oldest go first).
Dropped events are counted in ``ballast_ui_events_dropped_total``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter

from ballast_common.errors import AppError
from ballast_common.telemetry import get_logger, validate_event_name
from ballast_common.telemetry.metrics import get_or_create
from ballast_ui.client import ApiUnavailable

log = get_logger(__name__)

Send = Callable[[Sequence[Mapping[str, Any]]], None]


def _dropped() -> Counter:
    return get_or_create(
        "ballast_ui_events_dropped_total",
        lambda: Counter(
            "ballast_ui_events_dropped_total",
            "Workbench events never recorded (api refused them, or unreachable too long).",
            ("reason",),
            registry=REGISTRY,
        ),
    )


@dataclass
class _Queued:
    send: Send
    event: dict[str, Any]
    tries: int = 0


class EventSender:
    """Queues events and sends them to the api from one background thread.

    Args:
        flush_s: How often the thread sends what is queued.
        max_batch: Most events in one request (the api's batch limit).
        max_queued: Most events waiting; beyond it the oldest are dropped.
        tries: Sends of an event while the api is unreachable, before it is dropped.
    """

    def __init__(
        self,
        *,
        flush_s: float = 2.0,
        max_batch: int = 100,
        max_queued: int = 10_000,
        tries: int = 5,
    ) -> None:
        self.flush_s = flush_s
        self.max_batch = max_batch
        self.tries = tries
        self._queue: deque[_Queued] = deque()
        self._max_queued = max_queued
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def track(
        self,
        send: Send,
        event: str,
        props: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """Queue ``event`` for the api client method ``send`` (`ApiClient.post_events`).

        Raises:
            ValueError: ``event`` is not a valid event name (a bug in the caller).
        """
        validate_event_name(event)
        item: dict[str, Any] = {"event": event, "props": dict(props or {})}
        if session_id:
            item["session_id"] = session_id[:64]
        with self._lock:
            if len(self._queue) >= self._max_queued:
                self._queue.popleft()
                _dropped().labels(reason="queue_full").inc()
            self._queue.append(_Queued(send, item))
            self._ensure_thread()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self) -> int:
        """Send everything queued now, grouped by client; returns how many were recorded."""
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        by_send: dict[Send, list[_Queued]] = {}
        for q in queued:
            by_send.setdefault(q.send, []).append(q)
        sent = 0
        keep: list[_Queued] = []
        for send, items in by_send.items():
            for start in range(0, len(items), self.max_batch):
                batch = items[start : start + self.max_batch]
                try:
                    send([q.event for q in batch])
                except ApiUnavailable:
                    for q in batch:
                        q.tries += 1
                        if q.tries < self.tries:
                            keep.append(q)
                        else:
                            _dropped().labels(reason="unreachable").inc()
                except AppError as exc:
                    _dropped().labels(reason="refused").inc(len(batch))
                    log.warning("events_refused", code=exc.code, count=len(batch))
                else:
                    sent += len(batch)
        if keep:
            with self._lock:
                self._queue.extendleft(reversed(keep))
        return sent

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="ballast-events", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # the sender thread must live on, whatever happens
                log.warning("events_flush_failed", error=repr(exc))


_sender = EventSender()


def sender() -> EventSender:
    """The process's event sender."""
    return _sender
