"""One way to call anything outside the process (webhook endpoints, the S3 object store,
future integrations).

Every call to a *target* (a named external service, configured once under `outbound`
in `AppConfig`: timeouts, attempts, backoff, breaker) goes through the same steps:

1. the target's **circuit breaker** (one per target, or per endpoint with `key=`):
   while open, calls fail fast with :class:`CircuitOpen` (a `TransientError` with
   `retry_after`) instead of piling up on a dead service;
2. **retries** of transient failures (connection errors, timeouts, 429 and 5xx) with
   exponential backoff and full jitter, so many clients that failed together do not
   retry in lock-step; exhausted retries raise :class:`OutboundUnavailable` (a client
   with retries of its own -- botocore, for S3 -- makes one attempt per call here and
   reports its retries through :meth:`Outbound.count_retry`, so they never multiply);
3. **timeouts** on every attempt (connect and read/write), never an unbounded wait;
4. **metrics** per target: ``ballast_outbound_calls_total{target,outcome}`` (outcome
   ``ok``, ``refused`` -- an application error that is an answer, such as a missing
   object, not a failure --, ``error`` or ``circuit_open``),
   ``ballast_outbound_call_seconds{target}``, ``ballast_outbound_retries_total{target}``
   and ``ballast_circuit_state{name}`` (0 closed, 1 half-open, 2 open).

Libraries, and why:

- Retries: `tenacity` (maintained, the library `stamina` builds on); its
  ``wait_random_exponential`` is the "full jitter" backoff of
  https://aws.amazon.com/builders-library/timeouts-retries-and-backoff-with-jitter/.
- Breaker: `pybreaker`. It is synchronous like our workers and CLI, and its state lives
  behind a pluggable storage: `CircuitRedisStorage` when Redis is configured, and
  :class:`SqlCircuitStorage` (the ``circuit_breakers`` table) otherwise, so every worker
  process sees the same breaker for an endpoint -- the embedded default included.
  `aiobreaker` is asyncio-only and keeps its state in one process.
  Calls go through pybreaker's ``calling()``, which holds the breaker's lock only to
  decide whether a call may go and to record how it ended, never during the call
  (``CircuitBreaker.call`` would serialise every call of a target in the process: one
  multi-GiB S3 upload would hold up every other object-store call of an api replica).
- HTTP: `httpx`, one pooled client per target with the target's timeouts.

One `Outbound` per process (:func:`process_outbound`) lets every caller in it share the
breakers and connection pools.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pybreaker
import tenacity
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ballast_common.config import AppConfig, OutboundConfig, OutboundTargetConfig
from ballast_common.errors import AppError, TransientError
from ballast_common.models.webhook import CircuitBreakerRow
from ballast_common.telemetry import get_logger
from ballast_common.telemetry.metrics import get_or_create

T = TypeVar("T")
log = get_logger(__name__)

_STATE_VALUES = {
    pybreaker.STATE_CLOSED: 0,
    pybreaker.STATE_HALF_OPEN: 1,
    pybreaker.STATE_OPEN: 2,
}


class OutboundUnavailable(TransientError):
    """A target failed every attempt of a call (503; retrying later may succeed)."""

    default_code = "outbound_unavailable"


class CircuitOpen(OutboundUnavailable):
    """A call was not made: the target's circuit is open (`retry_after` seconds left)."""

    default_code = "circuit_open"


class BadStatus(Exception):
    """An HTTP answer that counts as a failure of the target (429 or 5xx)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


# --------------------------------------------------------------------------- metrics


def _calls() -> Counter:
    return get_or_create(
        "ballast_outbound_calls",
        lambda: Counter(
            "ballast_outbound_calls",
            "Attempts of outbound calls by target and outcome (ok; refused: the "
            "target answered no, e.g. a missing object, which is no failure; error: "
            "a failure, counted by the breaker; circuit_open: not made).",
            ("target", "outcome"),
            registry=REGISTRY,
        ),
    )


def _seconds() -> Histogram:
    return get_or_create(
        "ballast_outbound_call_seconds",
        lambda: Histogram(
            "ballast_outbound_call_seconds",
            "Duration of outbound call attempts by target.",
            ("target",),
            registry=REGISTRY,
        ),
    )


def _retries() -> Counter:
    return get_or_create(
        "ballast_outbound_retries",
        lambda: Counter(
            "ballast_outbound_retries",
            "Outbound call attempts that were retried, by target.",
            ("target",),
            registry=REGISTRY,
        ),
    )


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


class _GaugeListener(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        _circuit_gauge().labels(name=cb.name).set(_STATE_VALUES.get(new.name, 0))
        log.info(
            "circuit_state_changed",
            circuit=cb.name,
            old=getattr(old, "name", None),
            new=new.name,
        )


# --------------------------------------------------------------------------- storage


class SqlCircuitStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker state in the ``circuit_breakers`` table, shared by every process.

    Each read and write is its own short transaction; counters are incremented in SQL
    (``fail_counter + 1``), so concurrent failures in several workers all count.
    """

    def __init__(self, name: str, engine: Engine) -> None:
        super().__init__(name)
        self._engine = engine
        try:
            with engine.begin() as conn:
                found = conn.execute(
                    select(CircuitBreakerRow.name).where(CircuitBreakerRow.name == name)
                ).first()
                if found is None:
                    conn.execute(
                        insert(CircuitBreakerRow).values(
                            name=name,
                            state=pybreaker.STATE_CLOSED,
                            fail_counter=0,
                            success_counter=0,
                            updated_at=_now(),
                        )
                    )
        except IntegrityError:
            pass  # another process created it first

    def _get(self, column: Any) -> Any:
        with self._engine.connect() as conn:
            return conn.execute(
                select(column).where(CircuitBreakerRow.name == self._name)
            ).scalar_one_or_none()

    def _set(self, **values: Any) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(CircuitBreakerRow)
                .where(CircuitBreakerRow.name == self._name)
                .values(updated_at=_now(), **values)
            )

    @property
    def state(self) -> str:
        return str(self._get(CircuitBreakerRow.state) or pybreaker.STATE_CLOSED)

    @state.setter
    def state(self, state: str) -> None:
        self._set(state=state)

    def increment_counter(self) -> None:
        self._set(fail_counter=CircuitBreakerRow.fail_counter + 1)

    def reset_counter(self) -> None:
        self._set(fail_counter=0)

    def increment_success_counter(self) -> None:
        self._set(success_counter=CircuitBreakerRow.success_counter + 1)

    def reset_success_counter(self) -> None:
        self._set(success_counter=0)

    @property
    def counter(self) -> int:
        return int(self._get(CircuitBreakerRow.fail_counter) or 0)

    @property
    def success_counter(self) -> int:
        return int(self._get(CircuitBreakerRow.success_counter) or 0)

    @property
    def opened_at(self) -> datetime | None:
        value: datetime | None = self._get(CircuitBreakerRow.opened_at)
        return value

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._set(opened_at=value)


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- client


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | BadStatus | ConnectionError)


def _not_a_failure(exc: BaseException) -> bool:
    return not (_retryable(exc) or isinstance(exc, TransientError))


def full_jitter_delay(attempt: int, *, base: float, cap: float) -> float:
    """Delay before retry number `attempt` (1-based): uniform in
    ``[0, min(cap, base * 2**attempt)]`` (tenacity's ``wait_random_exponential``).

    For retries spread over separate runs (webhook deliveries scheduled as jobs).
    """
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = max(1, attempt)
    wait = tenacity.wait_random_exponential(multiplier=base, max=cap)
    return float(wait(state))


class Outbound:
    """The outbound calls of one process: breakers, HTTP clients and settings by target.

    Args:
        config: The application configuration (`outbound` section, `redis_url`).
        engine: A sync engine for the shared breaker state when there is no Redis;
            None keeps breakers in process memory (tests of a single process, CLI).
        sleep: Waits between attempts (tests may pass a recorder).
    """

    def __init__(
        self,
        config: AppConfig,
        *,
        engine: Engine | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._engine = engine
        self._sleep = sleep
        self._lock = threading.Lock()
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._clients: dict[str, httpx.Client] = {}
        self._redis: Any = None

    @classmethod
    def standalone(cls, settings: OutboundConfig | None = None) -> Outbound:
        """An `Outbound` of its own, configured by `settings` only (default: every
        target's defaults; no environment, files or Redis are read), its breakers in
        its own memory: for clients built by hand (tests, scripts) that were given none.
        """
        return cls(AppConfig.model_construct(outbound=settings or OutboundConfig()))

    def settings(self, target: str) -> OutboundTargetConfig:
        return self.config.outbound.target(target)

    def _storage(self, name: str) -> pybreaker.CircuitBreakerStorage:
        if self.config.redis_url:
            if self._redis is None:
                import redis  # the server extra; only needed with Redis configured

                self._redis = redis.Redis.from_url(
                    self.config.redis_url,
                    socket_timeout=2.0,
                    socket_connect_timeout=2.0,
                )
            return pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, self._redis, namespace=f"ballast:circuit:{name}"
            )
        if self._engine is not None:
            return SqlCircuitStorage(name, self._engine)
        return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)

    def breaker(self, target: str, key: str | None = None) -> pybreaker.CircuitBreaker:
        """The breaker of `target` (or of one endpoint of it, `key`)."""
        name = key or target
        with self._lock:
            found = self._breakers.get(name)
            if found is None:
                s = self.settings(target)
                found = pybreaker.CircuitBreaker(
                    fail_max=s.breaker_fail_max,
                    reset_timeout=s.breaker_reset_s,
                    state_storage=self._storage(name),
                    listeners=[_GaugeListener()],
                    # Only transient failures say the target is unwell.
                    exclude=[_not_a_failure],
                    name=name,
                    # Re-raise the failure itself (its message says what went wrong).
                    throw_new_error_on_trip=False,
                )
                self._breakers[name] = found
                _circuit_gauge().labels(name=name).set(
                    _STATE_VALUES.get(found.current_state, 0)
                )
            return found

    def retry_after(self, breaker: pybreaker.CircuitBreaker) -> float:
        """Seconds until an open breaker lets a trial call through (0 if not open)."""
        if breaker.current_state != pybreaker.STATE_OPEN:
            return 0.0
        opened = breaker._state_storage.opened_at
        if opened is None:
            return 0.0
        left = opened + timedelta(seconds=breaker.reset_timeout) - _now()
        return max(0.0, left.total_seconds())

    def call(
        self,
        target: str,
        fn: Callable[[], T],
        *,
        key: str | None = None,
        attempts: int | None = None,
        retry_on: Callable[[BaseException], bool] = _retryable,
    ) -> T:
        """Call `fn` through the breaker, retrying transient failures with jitter.

        Args:
            target: A configured target name (settings: ``outbound.targets[target]``).
            fn: Makes one attempt; raises on failure.
            key: Breaker name when the target has several endpoints (default: target).
            attempts: Overrides the target's attempts (1: no retries here, e.g. when
                the caller schedules its own retries across runs).
            retry_on: Which failures are transient (and count against the breaker).

        Raises:
            CircuitOpen: The breaker is open; `fn` was not called.
            OutboundUnavailable: Every attempt failed transiently.
        """
        s = self.settings(target)
        breaker = self.breaker(target, key)
        calls, seconds = _calls(), _seconds()

        def attempt() -> T:
            started = time.monotonic()
            try:
                # The breaker's lock is held while entering and leaving, not around fn.
                with breaker.calling():
                    result = fn()
            except pybreaker.CircuitBreakerError:
                calls.labels(target, "circuit_open").inc()
                raise CircuitOpen(
                    f"{breaker.name} is unavailable (circuit open)",
                    details={"target": target, "circuit": breaker.name},
                    retry_after=self.retry_after(breaker),
                ) from None
            except BaseException as exc:
                refused = isinstance(exc, AppError) and _not_a_failure(exc)
                calls.labels(target, "refused" if refused else "error").inc()
                seconds.labels(target).observe(time.monotonic() - started)
                raise
            calls.labels(target, "ok").inc()
            seconds.labels(target).observe(time.monotonic() - started)
            return result

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts or s.attempts),
            wait=tenacity.wait_random_exponential(
                multiplier=s.backoff_base_s, max=s.backoff_max_s
            ),
            retry=tenacity.retry_if_exception(retry_on),
            sleep=self._sleep,
            before_sleep=lambda _state: self.count_retry(target),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except CircuitOpen:
            raise
        except Exception as exc:
            if not retry_on(exc):
                raise
            raise OutboundUnavailable(
                f"{target} is unavailable: {_describe(exc)}",
                details={"target": target, "circuit": breaker.name},
            ) from exc

    def count_retry(self, target: str) -> None:
        """Count one retried attempt of `target` made by a client's own retry logic
        (botocore's, for S3), so ``ballast_outbound_retries_total`` covers it."""
        _retries().labels(target).inc()

    # ------------------------------------------------------------------ HTTP

    def http(self, target: str) -> httpx.Client:
        """The pooled HTTP client of `target`, with its timeouts (no redirects)."""
        with self._lock:
            client = self._clients.get(target)
            if client is None:
                s = self.settings(target)
                client = httpx.Client(
                    timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
                    follow_redirects=False,
                )
                self._clients[target] = client
            return client

    def request(
        self,
        target: str,
        method: str,
        url: str,
        *,
        key: str | None = None,
        attempts: int | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One HTTP request through :meth:`call`: 429 and 5xx answers count as
        failures (retried, breaker); any other answer is returned.

        Raises:
            CircuitOpen: The breaker is open.
            OutboundUnavailable: Every attempt failed (its ``__cause__`` is the last
                error; a `BadStatus` carries the last response).
        """
        client = self.http(target)

        def once() -> httpx.Response:
            response = client.request(method, url, **kwargs)
            if response.status_code == 429 or response.status_code >= 500:
                raise BadStatus(response)
            return response

        return self.call(target, once, key=key, attempts=attempts)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            if self._redis is not None:
                self._redis.close()
                self._redis = None


_process: dict[tuple[int, int, int], tuple[Any, Any, Outbound]] = {}
_process_lock = threading.Lock()


def process_outbound(config: AppConfig, *, engine: Engine | None = None) -> Outbound:
    """This process's `Outbound` for `config` (and `engine`, the breakers' shared SQL
    storage when there is no Redis): callers that are handed only the configuration (an
    api route opening the object store per request, the backup CLI) share one set of
    breakers and connection pools. A forked child builds its own (no shared sockets).
    """
    key = (os.getpid(), id(config), id(engine))
    with _process_lock:
        found = _process.get(key)
        # ids are reused once an object is gone: the weak references say whether the
        # entry still belongs to these objects.
        if (
            found is not None
            and found[0]() is config
            and (found[1] is None or found[1]() is engine)
        ):
            return found[2]
        for stale in [
            k for k, v in _process.items() if k[0] != key[0] or v[0]() is None
        ]:
            gone = _process.pop(stale)[2]
            if stale[0] == key[0]:  # a parent's sockets stay the parent's
                gone.close()
        outbound = Outbound(config, engine=engine)
        _process[key] = (
            weakref.ref(config),
            weakref.ref(engine) if engine is not None else None,
            outbound,
        )
        return outbound


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BadStatus):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
