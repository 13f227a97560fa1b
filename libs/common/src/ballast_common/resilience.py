"""Retries with exponential backoff and jitter, and a circuit breaker.

Full jitter spreads retries of many clients that failed together (a restarted
database, a blue-green switch) over the whole backoff window instead of letting them
retry in lock-step. Ref: https://aws.amazon.com/builders-library/timeouts-retries-and-backoff-with-jitter/
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from enum import StrEnum
from typing import Literal, ParamSpec, TypeVar

from prometheus_client import REGISTRY, Gauge

from ballast_common.errors import TransientError
from ballast_common.telemetry.metrics import get_or_create

T = TypeVar("T")
P = ParamSpec("P")

Jitter = Literal["full", "equal", "none"]
OnRetry = Callable[[int, BaseException, float], None]

_default_rng = random.Random()


def backoff_delays(
    *,
    attempts: int | None,
    base: float = 0.05,
    factor: float = 2.0,
    max_delay: float = 2.0,
    jitter: Jitter = "full",
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield the waits between attempts (one fewer than ``attempts``).

    The ``n``-th cap is ``min(max_delay, base * factor**n)``; ``full`` jitter
    draws uniformly from ``[0, cap]``, ``equal`` from ``[cap/2, cap]``, ``none``
    yields the cap itself.

    Args:
        attempts: Total attempts, at least 1; ``None`` yields forever (an outbox
            that must flush eventually).
        base: First cap, in seconds.
        factor: Growth per retry, at least 1.
        max_delay: Upper bound of every delay, in seconds.
        jitter: ``"full"``, ``"equal"`` or ``"none"``.
        rng: Random source (seed one in tests); defaults to a module-level one.

    Yields:
        Delays in seconds, each within ``[0, max_delay]``.

    Raises:
        ValueError: On out-of-range arguments.
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    if base < 0 or max_delay < 0 or factor < 1:
        raise ValueError("need base >= 0, max_delay >= 0 and factor >= 1")
    if jitter not in ("full", "equal", "none"):
        raise ValueError(f"unknown jitter {jitter!r}")
    source = rng if rng is not None else _default_rng
    cap = min(base, max_delay)
    produced = 0
    while attempts is None or produced < attempts - 1:
        if jitter == "full":
            delay = source.uniform(0.0, cap)
        elif jitter == "equal":
            delay = cap / 2 + source.uniform(0.0, cap / 2)
        else:
            delay = cap
        # uniform() and cap/2 + x may round a hair past the cap (visible with
        # subnormal caps); the cap is a promise, so clamp to it.
        yield min(max(delay, 0.0), cap)
        produced += 1
        # Grow incrementally and clamp: base * factor**n overflows floats for
        # unbounded retries.
        cap = min(cap * factor, max_delay)


def retry(
    fn: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    attempts: int = 5,
    base: float = 0.05,
    factor: float = 2.0,
    max_delay: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: OnRetry | None = None,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying failures ``retry_on`` accepts.

    Only ``Exception`` subclasses are considered; ``KeyboardInterrupt`` and
    friends always propagate. The last exception is re-raised when attempts run
    out, and any exception ``retry_on`` rejects propagates at once.

    Args:
        fn: A zero-argument callable (use ``functools.partial`` for arguments).
        retry_on: Predicate deciding whether an exception is transient.
        attempts: Total attempts, at least 1.
        base: First backoff cap, in seconds.
        factor: Backoff growth per retry.
        max_delay: Maximum wait, in seconds.
        sleep: Sleep function (inject a fake in tests).
        on_retry: Called as ``on_retry(attempt, exc, delay)`` before each wait;
            ``attempt`` is the 1-based number of the attempt that failed.
        rng: Random source for the jitter.

    Returns:
        What ``fn`` returned.
    """
    delays = backoff_delays(
        attempts=attempts, base=base, factor=factor, max_delay=max_delay, rng=rng
    )
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            delay = next(delays, None)
            if delay is None or not retry_on(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)


async def aretry(
    fn: Callable[[], Awaitable[T]],
    *,
    retry_on: Callable[[BaseException], bool],
    attempts: int = 5,
    base: float = 0.05,
    factor: float = 2.0,
    max_delay: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: OnRetry | None = None,
    rng: random.Random | None = None,
) -> T:
    """Async :func:`retry`: awaits ``fn()`` and sleeps with ``asyncio.sleep``.

    Cancellation (``asyncio.CancelledError``, a ``BaseException``) is never
    retried.

    Args:
        fn: A zero-argument callable returning an awaitable.
        retry_on: Predicate deciding whether an exception is transient.
        attempts: Total attempts, at least 1.
        base: First backoff cap, in seconds.
        factor: Backoff growth per retry.
        max_delay: Maximum wait, in seconds.
        sleep: Async sleep function (inject a fake in tests).
        on_retry: Called as ``on_retry(attempt, exc, delay)`` before each wait.
        rng: Random source for the jitter.

    Returns:
        What ``fn`` returned.
    """
    delays = backoff_delays(
        attempts=attempts, base=base, factor=factor, max_delay=max_delay, rng=rng
    )
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            delay = next(delays, None)
            if delay is None or not retry_on(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)


class CircuitState(StrEnum):
    """Circuit breaker states."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


_STATE_VALUES = {
    CircuitState.CLOSED: 0,
    CircuitState.HALF_OPEN: 1,
    CircuitState.OPEN: 2,
}


def _circuit_gauge() -> Gauge:
    return get_or_create(
        "ballast_circuit_state",
        lambda: Gauge(
            "ballast_circuit_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open).",
            ("name",),
            registry=REGISTRY,
        ),
    )


class CircuitOpenError(TransientError):
    """Raised instead of calling a dependency whose circuit is open (503).

    Attributes:
        name: The breaker's name.
        retry_after: Seconds until a trial call will be allowed.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(
            f"{name} is unavailable (circuit open)",
            code="circuit_open",
            details={"circuit": name},
            retry_after=retry_after,
        )
        self.name = name


class CircuitBreaker:
    """Stop calling a failing dependency for a while, then probe it.

    ``closed``: calls pass; ``failure_threshold`` consecutive failures open the
    circuit. ``open``: calls fail fast with :class:`CircuitOpenError` for
    ``reset_timeout`` seconds. ``half_open``: one trial call passes; its success
    closes the circuit, its failure opens it again. A trial that never reports
    back (a crashed caller) is given up after another ``reset_timeout``.

    Thread-safe. The state is exported as ``ballast_circuit_state{name}``.

    Args:
        name: Dependency name (metric label, error message).
        failure_threshold: Consecutive failures that open the circuit.
        reset_timeout: Seconds to stay open before allowing a trial.
        clock: Monotonic clock (inject a fake in tests).
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must be >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None
        self._gauge = _circuit_gauge().labels(name=name)
        self._gauge.set(_STATE_VALUES[self._state])

    def _set_state(self, state: CircuitState) -> None:
        self._state = state
        self._gauge.set(_STATE_VALUES[state])

    def _refresh(self) -> None:
        # Lazily move open -> half_open once the timeout has passed.
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            self._set_state(CircuitState.HALF_OPEN)
            self._trial_started = None

    @property
    def state(self) -> CircuitState:
        """The current state (``open`` turns ``half_open`` once the timeout passed)."""
        with self._lock:
            self._refresh()
            return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while closed."""
        return self._failures

    def retry_after(self) -> float:
        """Seconds until a trial call will be allowed (0 unless open)."""
        with self._lock:
            self._refresh()
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self.reset_timeout - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Ask whether a call may proceed now; in half-open this takes the one trial.

        Returns:
            ``True`` if the caller should call and then report with
            :meth:`record_success` or :meth:`record_failure`.
        """
        with self._lock:
            self._refresh()
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.OPEN:
                return False
            now = self._clock()
            if (
                self._trial_started is not None
                and now - self._trial_started < self.reset_timeout
            ):
                return False
            self._trial_started = now
            return True

    def record_success(self) -> None:
        """Report a successful call: resets the count and closes the circuit."""
        with self._lock:
            self._failures = 0
            self._trial_started = None
            if self._state is not CircuitState.CLOSED:
                self._set_state(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """Report a failed call: may open (or re-open) the circuit."""
        with self._lock:
            self._refresh()
            self._trial_started = None
            if self._state is CircuitState.CLOSED:
                self._failures += 1
                if self._failures < self.failure_threshold:
                    return
            self._failures = 0
            self._opened_at = self._clock()
            self._set_state(CircuitState.OPEN)

    def _release_trial(self) -> None:
        # A call ended without a verdict (cancelled): let the next caller probe.
        with self._lock:
            self._trial_started = None

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` through the breaker.

        Any ``Exception`` from ``fn`` counts as a failure and is re-raised.

        Args:
            fn: The protected callable.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returned.

        Raises:
            CircuitOpenError: If the circuit is open (``fn`` is not called).
        """
        if not self.allow():
            raise CircuitOpenError(self.name, self.retry_after())
        try:
            result = fn(*args, **kwargs)
        except Exception:
            self.record_failure()
            raise
        except BaseException:
            self._release_trial()
            raise
        self.record_success()
        return result

    async def acall(
        self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Async :meth:`call`: awaits ``fn(*args, **kwargs)``.

        Args:
            fn: The protected coroutine function.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returned.

        Raises:
            CircuitOpenError: If the circuit is open (``fn`` is not called).
        """
        if not self.allow():
            raise CircuitOpenError(self.name, self.retry_after())
        try:
            result = await fn(*args, **kwargs)
        except Exception:
            self.record_failure()
            raise
        except BaseException:
            self._release_trial()
            raise
        self.record_success()
        return result
