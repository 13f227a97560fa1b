"""The write-behind outbox: widget values on their way to the api's drafts.

`Outbox.put(key, value)` returns at once. Values are coalesced per key (only the
newest value of a key is sent), debounced (a batch leaves ``debounce_s`` after the
last change, or ``max_delay_s`` after the first one while typing goes on) and sent as
one ``PUT /v1/drafts`` batch with one ``Idempotency-Key``. A batch keeps its write id
across retries, so a retry after a lost response is applied once. While the api is
unreachable the batch waits with exponential backoff and new changes keep coalescing
behind it; nothing is dropped.

Every key has a monotonically increasing sequence number; the api never lets an older
sequence overwrite a newer one. Sequences start from a coarse clock (tenths of a second
since 2025) so a new browser session, which has no memory of the last one, still
writes newer numbers than the ones it replaces.

The outbox knows nothing about Streamlit; `OutboxPump` drives any number of
outboxes from one background thread.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from ballast_common.errors import AppError, AuthenticationError, ValidationError
from ballast_common.telemetry import get_logger, log_error
from ballast_ui.client import ApiUnavailable, DraftItem, DraftResult, new_write_id

log = get_logger(__name__)

Send = Callable[[Sequence[DraftItem], str], Sequence[DraftResult]]
State = Literal["saved", "saving", "offline", "signed_out", "error"]

# 2025-01-01T00:00:00Z; the api stores sequences as 32-bit integers, which hold
# tenths of a second from here until 2031.
_SEQ_EPOCH = 1_735_689_600.0


def clock_seq() -> int:
    """A sequence number that grows with wall-clock time (tenths of a second)."""
    return int((time.time() - _SEQ_EPOCH) * 10)


def split_key(key: str) -> tuple[str, str]:
    """Split a widget key ``"{form_id}.{field}"`` at its last dot.

    Raises:
        ValueError: The key has no dot.
    """
    form_id, dot, name = key.rpartition(".")
    if not dot or not form_id or not name:
        raise ValueError(f"widget key {key!r} is not '<form_id>.<field>'")
    return form_id, name


@dataclass(frozen=True)
class OutboxStatus:
    """What the status badge shows."""

    state: State
    pending: int
    last_error: str | None = None
    retry_in_s: float | None = None

    @property
    def label(self) -> str:
        if self.state == "saved":
            return "Saved"
        if self.state == "saving":
            return "Saving…"
        noun = "change" if self.pending == 1 else "changes"
        if self.state == "offline":
            return f"Offline — {self.pending} {noun} pending"
        if self.state == "signed_out":
            return f"Signed out — {self.pending} {noun} pending"
        return f"Not saved — {self.last_error or 'error'}"


@dataclass
class _Batch:
    items: dict[str, DraftItem]
    write_id: str = field(default_factory=new_write_id)


class Outbox:
    """Debounced, coalescing, idempotent write-behind queue of widget values.

    Args:
        send: Sends one batch with its write id (`ApiClient.put_drafts`).
        debounce_s: Quiet time after the last change before a batch leaves.
        max_delay_s: Longest a change waits while changes keep coming.
        base_backoff_s: First retry delay after a failure (doubles, with a cap).
        max_backoff_s: Longest retry delay.
        clock: Monotonic clock (seconds), replaceable in tests.
        on_ack: Called with ``{key: value}`` after the api acknowledged values.
    """

    def __init__(
        self,
        send: Send,
        *,
        debounce_s: float = 0.3,
        max_delay_s: float = 2.0,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        on_ack: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self._send = send
        self.debounce_s = debounce_s
        self.max_delay_s = max_delay_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._on_ack = on_ack
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[str, DraftItem] = {}
        self._inflight: _Batch | None = None
        self._sending = False
        self._first_put: float | None = None
        self._last_put = 0.0
        self._failures = 0
        self._retry_at = 0.0
        self._state_error: State | None = None
        self._last_error: str | None = None
        self._seq: dict[str, int] = {}
        self._urgent = False
        self.acked: dict[str, Any] = {}
        # Who the values belong to (the user id), so a new session of the same user
        # can have them sent before it loads drafts (`OutboxPump.drain`).
        self.owner: str | None = None

    # ------------------------------------------------------------------ input

    def set_send(self, send: Send) -> None:
        """Replace the sender (e.g. after a new login), keeping every pending value."""
        with self._lock:
            self._send = send
            if self._state_error == "signed_out":
                self._state_error = None
                self._retry_at = 0.0

    def seed_seq(self, key: str, seq: int) -> None:
        """Tell the outbox the api already holds sequence ``seq`` for ``key``."""
        with self._lock:
            self._seq[key] = max(self._seq.get(key, 0), seq)

    def put(self, key: str, value: Any, *, urgent: bool = False) -> int:
        """Queue the newest value of a widget.

        Args:
            key: ``"{form_id}.{field}"``.
            value: Any JSON value.
            urgent: Send with the next pump tick instead of after the debounce.

        Returns:
            The sequence number given to this value.
        """
        form_id, name = split_key(key)
        with self._lock:
            seq = max(self._seq.get(key, 0) + 1, clock_seq())
            self._seq[key] = seq
            # Not validated here: the api judges each value, and one it refuses
            # (422) is set aside in `_deliver` without holding up the others.
            self._pending[key] = DraftItem.model_construct(
                form_id=form_id, field=name, value=value, seq=seq
            )
            now = self._clock()
            self._last_put = now
            self._urgent = self._urgent or urgent
            if self._first_put is None:
                self._first_put = now
            return seq

    # ------------------------------------------------------------------ state

    def status(self) -> OutboxStatus:
        """The current state and the number of keys not yet acknowledged."""
        with self._lock:
            keys = set(self._pending)
            if self._inflight is not None:
                keys |= set(self._inflight.items)
            n = len(keys)
            if self._state_error == "error" and not n:
                return OutboxStatus("error", 0, self._last_error)
            if not n:
                return OutboxStatus("saved", 0)
            if self._state_error in ("signed_out", "error"):
                return OutboxStatus(self._state_error, n, self._last_error)
            if self._failures:
                retry = max(0.0, self._retry_at - self._clock())
                return OutboxStatus("offline", n, self._last_error, retry)
            return OutboxStatus("saving", n)

    def pending_values(self) -> dict[str, Any]:
        """Every value not yet acknowledged (newest per key)."""
        with self._lock:
            out: dict[str, Any] = {}
            if self._inflight is not None:
                out.update({k: i.value for k, i in self._inflight.items.items()})
            out.update({k: i.value for k, i in self._pending.items()})
            return out

    def take_acked(self) -> dict[str, Any]:
        """The values acknowledged since the last call (for the browser journal)."""
        with self._lock:
            out, self.acked = self.acked, {}
            return out

    def ready(self, now: float | None = None) -> bool:
        """Whether `flush` would send something now."""
        now = self._clock() if now is None else now
        with self._lock:
            return self._ready(now)

    def _ready(self, now: float) -> bool:
        if self._sending or self._state_error == "signed_out":
            return False
        if self._inflight is not None:
            return now >= self._retry_at
        if not self._pending:
            return False
        assert self._first_put is not None
        quiet = self._urgent or now - self._last_put >= self.debounce_s
        overdue = now - self._first_put >= self.max_delay_s
        return (quiet or overdue) and now >= self._retry_at

    # ------------------------------------------------------------------ sending

    def flush(self, *, force: bool = False) -> bool:
        """Send the next batch if it is due (or now, with ``force``).

        Returns:
            ``True`` when nothing is left to send afterwards.
        """
        with self._lock:
            now = self._clock()
            if self._sending:
                return False
            if not force and not self._ready(now):
                return not self._pending and self._inflight is None
            if self._inflight is None:
                if not self._pending:
                    return True
                self._inflight = _Batch(dict(self._pending))
                self._pending.clear()
                self._first_put = None
                self._urgent = False
            batch = self._inflight
            send = self._send
            self._sending = True
        try:
            acked = self._deliver(send, batch)
        except (ApiUnavailable, AuthenticationError) as exc:
            with self._lock:
                self._sending = False
                self._failures += 1
                delay = min(
                    self.max_backoff_s,
                    self.base_backoff_s * 2 ** (self._failures - 1),
                )
                self._retry_at = self._clock() + delay
                self._last_error = exc.message
                if isinstance(exc, AuthenticationError):
                    self._state_error = "signed_out"
            log.warning(
                "outbox_send_failed",
                error=type(exc).__name__,
                pending=len(batch.items),
                failures=self._failures,
            )
            return False
        with self._lock:
            self._sending = False
            self._inflight = None
            self._failures = 0
            self._retry_at = 0.0
            if self._state_error == "signed_out":
                self._state_error = None
            self.acked.update(acked)
            done = not self._pending
            self._idle.notify_all()
        if self._on_ack is not None and acked:
            self._on_ack(acked)
        return done

    def _deliver(self, send: Send, batch: _Batch) -> dict[str, Any]:
        items = list(batch.items.values())
        try:
            send(items, batch.write_id)
        except ValidationError:
            # One bad value must not hold the others hostage: send them one by one,
            # each under its own write id derived from the batch's (still idempotent).
            return self._deliver_singly(send, batch)
        except (ApiUnavailable, AuthenticationError):
            raise
        except AppError as exc:
            self._record_error(exc, batch.items)
            return {}
        return {k: i.value for k, i in batch.items.items()}

    def _deliver_singly(self, send: Send, batch: _Batch) -> dict[str, Any]:
        acked: dict[str, Any] = {}
        for n, (key, item) in enumerate(sorted(batch.items.items())):
            try:
                send([item], f"{batch.write_id[:90]}-{n}")
            except (ApiUnavailable, AuthenticationError):
                # Keep only what is still unsent in the batch for the retry.
                with self._lock:
                    for done in acked:
                        batch.items.pop(done, None)
                raise
            except AppError as exc:
                self._record_error(exc, {key: item})
                continue
            acked[key] = item.value
        return acked

    def _record_error(self, exc: AppError, items: Mapping[str, DraftItem]) -> None:
        log_error(exc, {"keys": sorted(items)})
        with self._lock:
            self._state_error = "error"
            self._last_error = f"{exc.message} ({', '.join(sorted(items))})"

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or in flight (for tests and shutdown).

        Returns:
            ``True`` if the outbox became idle within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._pending and self._inflight is None:
                    return True
            if time.monotonic() >= deadline:
                return False
            self.flush()
            time.sleep(0.01)


class OutboxPump:
    """One background thread that flushes every registered outbox when it is due.

    Outboxes are held weakly: when a browser session ends, its outbox goes away.

    Args:
        interval_s: How often due outboxes are looked for.
        workers: Sends in parallel (one outbox never sends twice at once).
    """

    def __init__(self, interval_s: float = 0.05, workers: int = 4) -> None:
        self.interval_s = interval_s
        self._outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="outbox-send")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def register(self, outbox: Outbox) -> None:
        """Drive ``outbox`` from now on (starts the thread on first use)."""
        with self._lock:
            self._outboxes.add(outbox)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="outbox-pump", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for outbox in list(self._outboxes):
                if outbox.ready():
                    self._pool.submit(self._flush, outbox)

    def drain(
        self, owner: str, *, exclude: Outbox | None = None, timeout_s: float = 3.0
    ) -> bool:
        """Send what the other outboxes of ``owner`` hold now (debounce or not).

        Returns:
            ``True`` when they all became idle within ``timeout_s`` (an unreachable
            api makes this give up; their values stay queued).
        """
        with self._lock:
            others = [
                o for o in list(self._outboxes) if o.owner == owner and o is not exclude
            ]
        deadline = time.monotonic() + timeout_s
        idle = True
        for outbox in others:
            outbox.flush(force=True)
            if outbox.status().state in ("offline", "signed_out", "error"):
                idle = False  # the api is not taking them now: do not wait
                continue
            idle = outbox.wait_idle(max(0.0, deadline - time.monotonic())) and idle
        return idle

    @staticmethod
    def _flush(outbox: Outbox) -> None:
        try:
            outbox.flush()
        except Exception as exc:  # keep the pump alive whatever a send does
            log_error(exc, {"where": "outbox_pump"})

    def stop(self) -> None:
        """Stop the thread (pending values stay in their outboxes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)
