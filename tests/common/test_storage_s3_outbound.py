"""The S3 object store as an outbound target (``"s3"``): every operation timed and
counted, a circuit breaker that opens when the store is down and answers fast while
open, botocore's retries counted and not multiplied, and answers such as a missing
object that never count as failures. Against the real S3 test server, its outage made
by cutting the fault proxy in front of it.

As in test_outbound.py, time never decides an assertion: the breaker's reset timeout is
long, and "the timeout has passed" is made by moving the stored `opened_at` back.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pybreaker
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update

from ballast_common.config import AppConfig
from ballast_common.db import DB, migrate
from ballast_common.errors import NotFoundError, TransientError, ValidationError
from ballast_common.models import CircuitBreakerRow, utcnow
from ballast_common.outbound import CircuitOpen, Outbound, process_outbound
from ballast_common.storage import (
    S3_TARGET,
    S3ObjectStore,
    StorageCircuitOpenError,
    StorageError,
    StorageUnavailableError,
    TooLargeError,
    get_bytes,
    open_store,
    put_bytes,
)
from ballast_testing.s3 import S3Proxy, S3Server

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
RESET_S = 600
S3 = {
    "attempts": 1,
    "breaker_fail_max": 2,
    "breaker_reset_s": RESET_S,
    "connect_timeout_s": 2,
    "timeout_s": 10,
}


def s3_config(
    server: S3Server, bucket: str, endpoint_url: str, **target: object
) -> AppConfig:
    return AppConfig(
        s3={
            "endpoint_url": endpoint_url,
            "bucket": bucket,
            "region": server.region,
            "access_key_id": server.access_key,
            "secret_access_key": server.secret_key,
        },
        outbound={"targets": {S3_TARGET: {**S3, **target}}},
    )


def metric(metric_name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric_name, labels) or 0.0


def calls(outcome: str) -> float:
    return metric("ballast_outbound_calls_total", target=S3_TARGET, outcome=outcome)


def sent(store: S3ObjectStore) -> Counter[str]:
    """HTTP requests the store's client sends (each attempt, refused ones included)."""
    requests: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        requests[event_name.rsplit(".", 1)[-1]] += 1

    store.client.meta.events.register("before-send.s3", count)
    return requests


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    """The breakers' shared storage when there is no Redis (as in a worker)."""
    url = f"sqlite:///{tmp_path}/breakers.db"
    database = DB(url)
    migrate(db=database)
    try:
        yield database
    finally:
        database.dispose()


def expire(db: DB, name: str = S3_TARGET) -> None:
    """As if the breaker's reset timeout had passed."""
    with db.engine.begin() as conn:
        conn.execute(
            update(CircuitBreakerRow)
            .where(CircuitBreakerRow.name == name)
            .values(opened_at=utcnow() - timedelta(seconds=RESET_S + 1))
        )


def store_through(
    proxy: S3Proxy, server: S3Server, bucket: str, db: DB, **target: object
) -> S3ObjectStore:
    cfg = s3_config(server, bucket, proxy.endpoint_url, **target)
    store = open_store(cfg, outbound=Outbound(cfg, engine=db.engine))
    assert isinstance(store, S3ObjectStore)
    return store


class TestBreaker:
    def test_opens_when_the_store_is_down_answers_fast_then_closes(
        self, s3_server: S3Server, s3_bucket: str, s3_proxy: S3Proxy, db: DB
    ) -> None:
        store = store_through(s3_proxy, s3_server, s3_bucket, db)
        # Another process's store: the breaker's state is shared through the database.
        other = store_through(s3_proxy, s3_server, s3_bucket, db)
        put_bytes(store, "k.bin", b"payload")
        breaker = store.outbound.breaker(S3_TARGET)
        errors = calls("error")

        s3_proxy.cut()
        with pytest.raises(StorageUnavailableError, match="unreachable"):
            store.stat("k.bin")
        assert breaker.current_state == pybreaker.STATE_CLOSED
        with pytest.raises(StorageUnavailableError, match="unreachable"):
            other.list()  # the second failure, counted with the first: open
        assert breaker.current_state == pybreaker.STATE_OPEN
        assert calls("error") == errors + 2
        assert metric("ballast_circuit_state", name=S3_TARGET) == 2

        # Open: every operation fails at once, without a request, even once the store
        # is back (until the reset timeout has passed).
        s3_proxy.restore()
        requests = sent(store)
        rejected = calls("circuit_open")
        operations: list[Callable[[], object]] = [
            lambda: store.stat("k.bin"),
            lambda: store.open("k.bin"),
            lambda: store.exists("k.bin"),
            lambda: store.list(),
            lambda: store.delete("k.bin"),
            lambda: put_bytes(store, "new.bin", b"x"),
            lambda: store.ensure_bucket(),
            lambda: other.stat("k.bin"),
        ]
        for operation in operations:
            started = time.monotonic()
            with pytest.raises(StorageCircuitOpenError) as info:
                operation()
            assert time.monotonic() - started < 0.5
            assert isinstance(info.value, CircuitOpen)
            assert isinstance(info.value, TransientError)
            assert info.value.status == 503
            assert 0 < (info.value.retry_after or 0) <= RESET_S
        assert sum(requests.values()) == 0
        assert calls("circuit_open") == rejected + len(operations)

        # Half-open: one trial call; while the store is still down it fails, and the
        # circuit opens again.
        s3_proxy.cut()
        expire(db)
        with pytest.raises(StorageUnavailableError, match="unreachable"):
            store.stat("k.bin")
        assert breaker.current_state == pybreaker.STATE_OPEN
        with pytest.raises(StorageCircuitOpenError):
            other.stat("k.bin")

        # The store is back and the next trial succeeds: closed, for both processes.
        s3_proxy.restore()
        expire(db)
        assert store.stat("k.bin").size == len(b"payload")
        assert breaker.current_state == pybreaker.STATE_CLOSED
        assert other.outbound.breaker(S3_TARGET).current_state == pybreaker.STATE_CLOSED
        assert get_bytes(other, "k.bin") == b"payload"
        assert metric("ballast_circuit_state", name=S3_TARGET) == 0

    def test_answers_are_not_failures(
        self, s3_server: S3Server, s3_bucket: str, s3_proxy: S3Proxy, db: DB
    ) -> None:
        store = store_through(s3_proxy, s3_server, s3_bucket, db)
        breaker = store.outbound.breaker(S3_TARGET)
        refused, errors = calls("refused"), calls("error")
        for _ in range(3):  # more than breaker_fail_max
            with pytest.raises(NotFoundError):
                store.stat("missing.bin")
            with pytest.raises(NotFoundError):
                store.open("missing.bin")
            assert not store.exists("missing.bin")
            store.delete("missing.bin")  # deleting a missing object is fine
            with pytest.raises(ValidationError, match="invalid object key"):
                store.stat("../escape")
            with pytest.raises(TooLargeError):
                store.put("big.bin", _Stream(b"x" * (6 * MIB)), max_bytes=MIB)  # type: ignore[arg-type]
        # A refusal by the server (no such bucket) is an answer too.
        elsewhere = S3ObjectStore(
            store.client, "ballast-no-such-bucket", outbound=store.outbound
        )
        for _ in range(3):
            with pytest.raises(StorageError, match="NoSuchBucket") as info:
                elsewhere.list()
            assert not isinstance(info.value, TransientError)
        assert breaker.fail_counter == 0
        assert breaker.current_state == pybreaker.STATE_CLOSED
        assert calls("error") == errors
        # 404s of stat, open and exists, the stream over its limit, the missing bucket.
        assert calls("refused") == refused + 3 * 4 + 3


class TestMetrics:
    def test_every_operation_is_one_timed_call_of_the_target(
        self, s3_server: S3Server, s3_bucket: str
    ) -> None:
        cfg = s3_config(s3_server, s3_bucket, s3_server.endpoint_url)
        store = open_store(cfg)
        assert isinstance(store, S3ObjectStore)
        assert store.outbound is process_outbound(cfg)
        seconds = "ballast_outbound_call_seconds_count"
        expected = 0
        ok, timed = calls("ok"), metric(seconds, target=S3_TARGET)

        def one_more() -> None:
            nonlocal expected
            expected += 1
            assert calls("ok") == ok + expected
            assert metric(seconds, target=S3_TARGET) == timed + expected

        store.ensure_bucket()
        expected += 1  # head_bucket, then the lifecycle rule: two calls
        one_more()
        put_bytes(store, "a.bin", b"a")
        one_more()
        # A multipart upload, its parts in parallel, is one call too.
        store.put("b.bin", io.BytesIO(b"b" * (9 * MIB)))
        one_more()
        assert store.stat("a.bin").size == 1
        one_more()
        assert store.exists("b.bin")
        one_more()
        with store.open("b.bin") as stream:
            assert len(stream.read()) == 9 * MIB  # the body's reads are not calls
        one_more()
        assert store.list() == ["a.bin", "b.bin"]
        one_more()
        store.delete("a.bin")
        one_more()

    def test_botocore_retries_are_counted_and_not_multiplied(
        self, s3_server: S3Server, s3_bucket: str, s3_proxy: S3Proxy, db: DB
    ) -> None:
        store = store_through(
            s3_proxy, s3_server, s3_bucket, db, attempts=3, breaker_fail_max=5
        )
        requests = sent(store)
        retries = metric("ballast_outbound_retries_total", target=S3_TARGET)
        errors = calls("error")
        s3_proxy.cut()
        with pytest.raises(StorageUnavailableError):
            store.stat("k.bin")
        # The target's 3 attempts are botocore's; Outbound adds none (3 x 3 = 9 if both
        # layers retried), and the failed operation counts once against the breaker.
        assert requests["HeadObject"] == 3
        assert metric("ballast_outbound_retries_total", target=S3_TARGET) == retries + 2
        assert calls("error") == errors + 1
        assert store.outbound.breaker(S3_TARGET).fail_counter == 1


def test_a_store_built_by_hand_has_a_breaker_of_its_own(
    s3_server: S3Server, s3_bucket: str, s3_proxy: S3Proxy
) -> None:
    """Tests and scripts build stores from a client alone: they get the default target
    settings and a breaker in memory, shared with no other store."""
    down = S3ObjectStore(
        s3_server.client(endpoint_url=s3_proxy.endpoint_url), s3_bucket
    )
    up = S3ObjectStore(s3_server.client(), s3_bucket)
    fail_max = down.outbound.settings(S3_TARGET).breaker_fail_max
    s3_proxy.cut()
    for _ in range(fail_max):
        with pytest.raises(StorageUnavailableError, match="unreachable"):
            down.list()
    with pytest.raises(StorageCircuitOpenError):
        down.list()
    assert up.list() == []


class _Stream(io.RawIOBase):
    """A pipe-like input: readable once, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)
