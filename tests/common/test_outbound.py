"""ballast_common.outbound against a real HTTP receiver: retries with jitter, timeouts,
and a circuit breaker whose state two processes' clients share (database or Redis).

Time never decides an assertion: the breaker's reset timeout is long, and "the timeout
has passed" is made by moving the stored `opened_at` back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pybreaker
import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import update

from ballast_common.config import AppConfig, OutboundTargetConfig
from ballast_common.db import DB, migrate
from ballast_common.errors import NotFoundError
from ballast_common.models import CircuitBreakerRow, utcnow
from ballast_common.outbound import (
    BadStatus,
    CircuitOpen,
    Outbound,
    OutboundUnavailable,
    SqlCircuitStorage,
    full_jitter_delay,
    process_outbound,
)
from ballast_testing.servers import RedisServer, free_port
from tests.fixtures.receiver import Receiver, receiver

TARGET = {
    "attempts": 1,
    "breaker_fail_max": 2,
    "breaker_reset_s": 600,
    "timeout_s": 5,
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
}


@pytest.fixture
def recv() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/outbound.db"
    db = DB(url)
    migrate(db=db)
    db.dispose()
    return url


def config(**target: object) -> AppConfig:
    return AppConfig(outbound={"targets": {"t": {**TARGET, **target}}})


def metric(metric_name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric_name, labels) or 0.0


def expire(url: str, name: str) -> None:
    """As if the breaker's reset timeout had passed."""
    db = DB(url)
    with db.engine.begin() as conn:
        conn.execute(
            update(CircuitBreakerRow)
            .where(CircuitBreakerRow.name == name)
            .values(opened_at=utcnow() - timedelta(seconds=601))
        )
    db.dispose()


def post(client: Outbound, url: str, key: str = "t:endpoint") -> int:
    return client.request("t", "POST", url, key=key, content=b"{}").status_code


class TestBreakerSharedInTheDatabase:
    def test_opens_half_opens_and_closes_across_two_processes(
        self, recv: Receiver, db_url: str
    ) -> None:
        # Two clients with their own engines: two worker processes.
        db_a, db_b = DB(db_url), DB(db_url)
        a = Outbound(config(), engine=db_a.engine)
        b = Outbound(config(), engine=db_b.engine)
        try:
            recv.answer(default=500)
            with pytest.raises(OutboundUnavailable):
                post(a, recv.url)
            with pytest.raises(OutboundUnavailable):
                post(b, recv.url)  # the second failure, counted with a's: open
            assert a.breaker("t", "t:endpoint").current_state == pybreaker.STATE_OPEN
            before = recv.count
            rejected = metric(
                "ballast_outbound_calls_total", target="t", outcome="circuit_open"
            )
            for client in (a, b):
                with pytest.raises(CircuitOpen) as info:
                    post(client, recv.url)
                assert 0 < (info.value.retry_after or 0) <= 600
            assert recv.count == before  # fail fast: nothing was sent
            assert (
                metric(
                    "ballast_outbound_calls_total", target="t", outcome="circuit_open"
                )
                == rejected + 2
            )

            # Half-open: one trial; it fails, so the circuit opens again.
            expire(db_url, "t:endpoint")
            with pytest.raises(OutboundUnavailable):
                post(b, recv.url)
            assert recv.count == before + 1
            with pytest.raises(CircuitOpen):
                post(a, recv.url)

            # The next trial succeeds: closed for everybody.
            expire(db_url, "t:endpoint")
            recv.answer(default=200)
            assert post(a, recv.url) == 200
            assert b.breaker("t", "t:endpoint").current_state == pybreaker.STATE_CLOSED
            assert post(b, recv.url) == 200
            assert metric("ballast_circuit_state", name="t:endpoint") == 0
        finally:
            a.close()
            b.close()
            db_a.dispose()
            db_b.dispose()

    def test_endpoints_have_their_own_breakers(
        self, recv: Receiver, db_url: str
    ) -> None:
        db = DB(db_url)
        client = Outbound(config(), engine=db.engine)
        try:
            recv.answer(default=503)
            for _ in range(2):
                with pytest.raises(OutboundUnavailable):
                    post(client, recv.url, key="t:one")
            with pytest.raises(CircuitOpen):
                post(client, recv.url, key="t:one")
            recv.answer(default=200)
            assert post(client, recv.url, key="t:two") == 200
        finally:
            client.close()
            db.dispose()

    def test_client_errors_do_not_count_against_the_target(
        self, recv: Receiver, db_url: str
    ) -> None:
        db = DB(db_url)
        client = Outbound(config(), engine=db.engine)
        try:
            recv.answer(default=404)
            for _ in range(5):
                assert post(client, recv.url) == 404
            assert client.breaker("t", "t:endpoint").fail_counter == 0
        finally:
            client.close()
            db.dispose()


@pytest.mark.integration
def test_breaker_state_shared_through_redis(
    recv: Receiver, redis_server: RedisServer
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/14"
    cfg = config().model_copy(update={"redis_url": url})
    a, b = Outbound(cfg), Outbound(cfg)
    try:
        recv.answer(default=500)
        for client in (a, b):
            with pytest.raises(OutboundUnavailable):
                post(client, recv.url, key="t:redis")
        with pytest.raises(CircuitOpen):
            post(a, recv.url, key="t:redis")
        with pytest.raises(CircuitOpen):
            post(b, recv.url, key="t:redis")
        b.breaker("t", "t:redis").close()
        recv.answer(default=200)
        assert post(a, recv.url, key="t:redis") == 200
    finally:
        a.close()
        b.close()
        redis.Redis.from_url(url).flushdb()


class TestRetries:
    def test_transient_failures_are_retried_with_jitter(self, recv: Receiver) -> None:
        slept: list[float] = []
        client = Outbound(config(attempts=4, breaker_fail_max=10), sleep=slept.append)
        retried = metric("ballast_outbound_retries_total", target="t")
        try:
            recv.answer(500, 429, 502, default=200)
            assert post(client, recv.url) == 200
        finally:
            client.close()
        assert recv.count == 4
        assert len(slept) == 3
        assert all(0 <= s <= 0.05 for s in slept)
        assert metric("ballast_outbound_retries_total", target="t") == retried + 3

    def test_exhausted_retries_raise_with_the_last_answer(self, recv: Receiver) -> None:
        client = Outbound(config(attempts=2), sleep=lambda _s: None)
        try:
            recv.answer(default=503)
            with pytest.raises(OutboundUnavailable) as info:
                post(client, recv.url)
        finally:
            client.close()
        assert isinstance(info.value.__cause__, BadStatus)
        assert info.value.__cause__.response.status_code == 503
        assert "HTTP 503" in info.value.message
        assert recv.count == 2

    def test_a_hung_target_times_out(self, recv: Receiver) -> None:
        recv.delay_s = 2.0
        client = Outbound(config(timeout_s=0.2, attempts=1))
        try:
            with pytest.raises(OutboundUnavailable) as info:
                post(client, recv.url)
        finally:
            client.close()
        assert isinstance(info.value.__cause__, httpx.TimeoutException)

    def test_refused_connections_are_transient(self) -> None:
        client = Outbound(config(attempts=2), sleep=lambda _s: None)
        try:
            with pytest.raises(OutboundUnavailable) as info:
                post(client, f"http://127.0.0.1:{free_port()}/")
        finally:
            client.close()
        assert info.value.status == 503
        assert isinstance(info.value.__cause__, httpx.ConnectError)

    def test_other_errors_propagate_untouched(self) -> None:
        client = Outbound(config(attempts=3))
        calls: list[int] = []

        def broken() -> None:
            calls.append(1)
            raise KeyError("a bug, not an outage")

        with pytest.raises(KeyError):
            client.call("t", broken)
        assert calls == [1]
        assert client.breaker("t").fail_counter == 0


def test_full_jitter_delay_stays_within_the_cap() -> None:
    for attempt in range(1, 30):
        delay = full_jitter_delay(attempt, base=1.0, cap=60.0)
        assert 0 <= delay <= min(60.0, 2.0**attempt)


def test_default_settings_apply_to_unnamed_targets() -> None:
    cfg = AppConfig(outbound={"default": {"timeout_s": 7}})
    assert Outbound(cfg).settings("anything").timeout_s == 7


class TestCallsOfOneTarget:
    def test_a_slow_call_does_not_hold_up_the_others(self) -> None:
        """The breaker decides, it does not serialise: a multi-GiB upload must not make
        every other call of the target in the process wait."""
        client = Outbound(config())
        started, release = threading.Event(), threading.Event()

        def slow() -> str:
            started.set()
            assert release.wait(10)
            return "slow"

        with ThreadPoolExecutor(max_workers=2) as pool:
            slow_call = pool.submit(client.call, "t", slow)
            assert started.wait(5)
            quick = pool.submit(client.call, "t", lambda: "quick")
            try:
                assert quick.result(timeout=5) == "quick"
                assert not slow_call.done()
            finally:
                release.set()
            assert slow_call.result(timeout=5) == "slow"

    def test_answers_that_are_errors_are_refused_not_failures(self) -> None:
        client = Outbound(config())
        before = metric("ballast_outbound_calls_total", target="t", outcome="refused")
        errors = metric("ballast_outbound_calls_total", target="t", outcome="error")

        def missing() -> None:
            raise NotFoundError("object k not found")

        for _ in range(3):
            with pytest.raises(NotFoundError):
                client.call("t", missing)
        assert client.breaker("t").fail_counter == 0
        assert client.breaker("t").current_state == pybreaker.STATE_CLOSED
        assert (
            metric("ballast_outbound_calls_total", target="t", outcome="refused")
            == before + 3
        )
        assert (
            metric("ballast_outbound_calls_total", target="t", outcome="error")
            == errors
        )


def test_one_outbound_per_process_and_configuration(db_url: str) -> None:
    cfg, other = config(), config()
    db = DB(db_url)
    try:
        assert process_outbound(cfg) is process_outbound(cfg)
        assert process_outbound(cfg) is not process_outbound(other)
        with_db = process_outbound(cfg, engine=db.engine)
        assert with_db is process_outbound(cfg, engine=db.engine)
        assert with_db is not process_outbound(cfg)
        assert isinstance(with_db.breaker("t")._state_storage, SqlCircuitStorage)
    finally:
        db.dispose()


def test_a_standalone_outbound_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("BALLAST_OUTBOUND__DEFAULT__ATTEMPTS", "9")
    client = Outbound.standalone()
    assert client.config.redis_url is None
    assert client.settings("s3").attempts == OutboundTargetConfig().attempts
    assert isinstance(
        client.breaker("s3")._state_storage, pybreaker.CircuitMemoryStorage
    )
