import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from ballast_common.errors import TransientError
from ballast_common.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    aretry,
    backoff_delays,
    retry,
)


class Flaky:
    """Fails ``failures`` times with ``exc``, then returns ``"ok"``."""

    def __init__(self, failures: int, exc: Exception | None = None) -> None:
        self.failures = failures
        self.exc = exc or ConnectionError("reset")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "ok"


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError | TransientError)


class TestBackoffDelays:
    @settings(deadline=None, max_examples=300)
    @given(
        attempts=st.integers(min_value=1, max_value=60),
        base=st.floats(min_value=0, max_value=5),
        factor=st.floats(min_value=1, max_value=10),
        max_delay=st.floats(min_value=0, max_value=30),
        jitter=st.sampled_from(["full", "equal", "none"]),
        seed=st.integers(),
    )
    def test_delays_stay_within_caps(
        self,
        attempts: int,
        base: float,
        factor: float,
        max_delay: float,
        jitter: str,
        seed: int,
    ) -> None:
        delays = list(
            backoff_delays(
                attempts=attempts,
                base=base,
                factor=factor,
                max_delay=max_delay,
                jitter=jitter,  # type: ignore[arg-type]
                rng=random.Random(seed),
            )
        )
        assert len(delays) == attempts - 1
        cap = min(base, max_delay)
        for delay in delays:
            assert 0 <= delay <= max_delay
            assert delay <= cap * (1 + 1e-9)
            if jitter == "equal":
                assert delay >= cap / 2 * (1 - 1e-9)
            if jitter == "none":
                assert delay == pytest.approx(cap)
            cap = min(cap * factor, max_delay)

    def test_exponential_growth_without_jitter(self) -> None:
        delays = list(
            backoff_delays(
                attempts=8, base=0.1, factor=2.0, max_delay=2.0, jitter="none"
            )
        )
        assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])

    def test_full_jitter_actually_varies(self) -> None:
        delays = list(
            backoff_delays(attempts=50, base=1.0, max_delay=1.0, rng=random.Random(1))
        )
        assert len(set(delays)) > 40
        assert min(delays) < 0.2 < 0.8 < max(delays)

    def test_unbounded_is_capped_and_does_not_overflow(self) -> None:
        gen = backoff_delays(
            attempts=None, base=1.0, factor=10.0, max_delay=3.0, jitter="none"
        )
        delays = [next(gen) for _ in range(2000)]
        assert delays[-1] == 3.0

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"attempts": 0},
            {"attempts": 3, "base": -1},
            {"attempts": 3, "max_delay": -1},
            {"attempts": 3, "factor": 0.5},
            {"attempts": 3, "jitter": "random"},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
            next(backoff_delays(**kwargs))  # type: ignore[arg-type]


class TestRetry:
    def test_retries_until_success(self) -> None:
        fn = Flaky(3)
        slept: list[float] = []
        retries: list[tuple[int, str, float]] = []
        result = retry(
            fn,
            retry_on=_is_transient,
            attempts=5,
            base=0.1,
            max_delay=1.0,
            sleep=slept.append,
            on_retry=lambda n, exc, d: retries.append((n, type(exc).__name__, d)),
            rng=random.Random(0),
        )
        assert result == "ok"
        assert fn.calls == 4
        assert len(slept) == 3
        assert [n for n, _, _ in retries] == [1, 2, 3]
        assert [d for _, _, d in retries] == slept
        assert all(0 <= d <= 1.0 for d in slept)

    def test_gives_up_after_attempts_and_reraises_the_last_error(self) -> None:
        fn = Flaky(10)
        slept: list[float] = []
        with pytest.raises(ConnectionError, match="reset"):
            retry(fn, retry_on=_is_transient, attempts=3, sleep=slept.append)
        assert fn.calls == 3
        assert len(slept) == 2

    def test_non_retryable_errors_propagate_immediately(self) -> None:
        fn = Flaky(1, ValueError("bad input"))
        slept: list[float] = []
        with pytest.raises(ValueError, match="bad input"):
            retry(fn, retry_on=_is_transient, sleep=slept.append)
        assert fn.calls == 1
        assert slept == []

    def test_base_exceptions_are_never_retried(self) -> None:
        calls = 0

        def interrupted() -> None:
            nonlocal calls
            calls += 1
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            retry(interrupted, retry_on=lambda _exc: True, sleep=lambda _d: None)
        assert calls == 1

    def test_single_attempt(self) -> None:
        with pytest.raises(ConnectionError):
            retry(Flaky(1), retry_on=_is_transient, attempts=1, sleep=lambda _d: None)


class TestAretry:
    def test_retries_until_success(self) -> None:
        calls = 0
        slept: list[float] = []

        async def fn() -> str:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise TransientError("db restarting")
            return "ok"

        async def fake_sleep(delay: float) -> None:
            slept.append(delay)

        retries: list[int] = []
        result = asyncio.run(
            aretry(
                fn,
                retry_on=_is_transient,
                sleep=fake_sleep,
                on_retry=lambda n, _exc, _d: retries.append(n),
            )
        )
        assert result == "ok"
        assert calls == 3
        assert len(slept) == 2
        assert retries == [1, 2]

    def test_gives_up_and_does_not_retry_other_errors(self) -> None:
        async def down() -> None:
            raise ConnectionError("down")

        async def bad() -> None:
            raise ValueError("bad")

        with pytest.raises(ConnectionError):
            asyncio.run(aretry(down, retry_on=_is_transient, attempts=2, base=0.001))
        with pytest.raises(ValueError, match="bad"):
            asyncio.run(aretry(bad, retry_on=_is_transient, base=0.001))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state(cb: CircuitBreaker) -> CircuitState:
    # A function call, so mypy does not narrow the property across transitions.
    return cb.state


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("ballast_circuit_state", {"name": name})


def _boom() -> None:
    raise ConnectionError("down")


class TestCircuitBreaker:
    def test_full_cycle(self) -> None:
        clock = FakeClock()
        cb = CircuitBreaker(
            "db-full-cycle", failure_threshold=3, reset_timeout=10.0, clock=clock
        )
        assert _state(cb) is CircuitState.CLOSED
        assert _gauge("db-full-cycle") == 0

        for _ in range(2):
            with pytest.raises(ConnectionError):
                cb.call(_boom)
        assert _state(cb) is CircuitState.CLOSED
        assert cb.failures == 2
        with pytest.raises(ConnectionError):
            cb.call(_boom)
        assert _state(cb) is CircuitState.OPEN
        assert _gauge("db-full-cycle") == 2

        calls: list[int] = []
        clock.now += 4
        with pytest.raises(CircuitOpenError) as info:
            cb.call(calls.append, 1)
        assert calls == []
        assert info.value.retry_after == pytest.approx(6.0)
        assert info.value.status == 503
        assert info.value.code == "circuit_open"
        assert isinstance(info.value, TransientError)
        assert not cb.allow()

        clock.now += 6
        assert _state(cb) is CircuitState.HALF_OPEN
        assert _gauge("db-full-cycle") == 1
        assert cb.retry_after() == 0.0
        assert cb.call(lambda x: x * 2, 21) == 42
        assert _state(cb) is CircuitState.CLOSED
        assert _gauge("db-full-cycle") == 0
        assert cb.failures == 0

    def test_success_resets_the_failure_count(self) -> None:
        cb = CircuitBreaker("svc-reset", failure_threshold=2, clock=FakeClock())
        cb.record_failure()
        cb.record_success()
        cb.record_failure()
        assert _state(cb) is CircuitState.CLOSED

    def test_half_open_allows_one_trial_and_failure_reopens(self) -> None:
        clock = FakeClock()
        cb = CircuitBreaker(
            "svc-trial", failure_threshold=1, reset_timeout=5.0, clock=clock
        )
        cb.record_failure()
        assert _state(cb) is CircuitState.OPEN
        clock.now += 5
        assert cb.allow()  # the trial
        assert not cb.allow()  # everyone else waits for its verdict
        cb.record_failure()
        assert _state(cb) is CircuitState.OPEN
        assert cb.retry_after() == pytest.approx(5.0)
        clock.now += 5
        assert cb.allow()
        cb.record_success()
        assert _state(cb) is CircuitState.CLOSED

    def test_a_trial_that_never_reports_is_given_up(self) -> None:
        clock = FakeClock()
        cb = CircuitBreaker(
            "svc-stuck", failure_threshold=1, reset_timeout=5.0, clock=clock
        )
        cb.record_failure()
        clock.now += 5
        assert cb.allow()
        clock.now += 4
        assert not cb.allow()
        clock.now += 1
        assert cb.allow()

    def test_cancellation_releases_the_trial(self) -> None:
        clock = FakeClock()
        cb = CircuitBreaker(
            "svc-cancel", failure_threshold=1, reset_timeout=5.0, clock=clock
        )
        cb.record_failure()
        clock.now += 5

        def interrupted() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            cb.call(interrupted)
        assert _state(cb) is CircuitState.HALF_OPEN
        assert cb.allow()

    def test_acall(self) -> None:
        clock = FakeClock()
        cb = CircuitBreaker(
            "svc-async", failure_threshold=1, reset_timeout=1.0, clock=clock
        )

        async def ok(value: int) -> int:
            return value

        async def down() -> None:
            raise ConnectionError("down")

        async def cancelled() -> None:
            raise asyncio.CancelledError

        async def scenario() -> None:
            assert await cb.acall(ok, 7) == 7
            with pytest.raises(ConnectionError):
                await cb.acall(down)
            with pytest.raises(CircuitOpenError):
                await cb.acall(ok, 1)
            clock.now += 1
            with pytest.raises(asyncio.CancelledError):
                await cb.acall(cancelled)
            assert await cb.acall(ok, 2) == 2
            assert _state(cb) is CircuitState.CLOSED

        asyncio.run(scenario())

    def test_invalid_arguments(self) -> None:
        with pytest.raises(ValueError, match="failure_threshold"):
            CircuitBreaker("x", failure_threshold=0)
        with pytest.raises(ValueError, match="reset_timeout"):
            CircuitBreaker("x", reset_timeout=-1)

    def test_two_breakers_with_one_name_share_the_metric_without_errors(self) -> None:
        CircuitBreaker("svc-dup")
        CircuitBreaker("svc-dup")
        assert _gauge("svc-dup") == 0
