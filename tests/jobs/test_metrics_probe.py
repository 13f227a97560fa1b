"""The worker's probes and scrapes never wait on the database.

The queue and status gauges are counted by the sweeper on its own schedule under a
statement timeout; /healthz and /metrics only read memory.
"""

from __future__ import annotations

import secrets
import threading
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version

import psycopg
import pytest

from ballast_common.db import DB, migrate
from ballast_common.db.migrate import head_revision
from ballast_jobs import metrics
from ballast_testing.servers import PostgresServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def db(postgres_server: PostgresServer) -> Iterator[DB]:
    name = f"ballast_probe_{secrets.token_hex(4)}"
    url = postgres_server.create_database(name)
    database = DB(url)
    migrate(db=database)
    metrics.reset_gauges()
    try:
        yield database
    finally:
        database.dispose()
        postgres_server.drop_database(name)


def _get(url: str) -> tuple[int, str]:
    # A short client timeout: a probe that waited on the database would miss it.
    with urllib.request.urlopen(url, timeout=3) as resp:
        return resp.status, resp.read().decode()


def test_probes_answer_while_the_jobs_table_is_locked(db: DB) -> None:
    port = free_port()
    metrics.serve(port, addr="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    # Before the first count: no made-up zeros.
    assert "ballast_jobs_queue_depth" not in _get(base + "/metrics")[1]
    metrics.refresh_gauges(db, 0)
    counted = _get(base + "/metrics")[1]
    assert 'ballast_jobs{status="PENDING"} 0.0' in counted
    info = (
        f'ballast_build_info{{schema="{head_revision()}",service="worker",'
        f'version="{version("ballast-jobs")}"}} 1.0'
    )
    assert info in counted
    url = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        counting = threading.Thread(
            target=metrics.refresh_gauges, args=(db, 0), kwargs={"timeout_ms": 2000}
        )
        counting.start()
        try:
            # While the count waits on the lock, both endpoints answer from memory.
            assert _get(base + "/healthz") == (200, "ok\n")
            status, body = _get(base + "/metrics")
            assert status == 200
            assert 'ballast_jobs{status="PENDING"} 0.0' in body
        finally:
            counting.join(30)
        locker.rollback()
    assert not counting.is_alive()
    # The count that timed out kept the last one (and its age grows).
    assert 'ballast_jobs{status="PENDING"} 0.0' in _get(base + "/metrics")[1]
    assert "ballast_jobs_metrics_age_seconds" in _get(base + "/metrics")[1]


def test_counts_are_taken_at_most_once_per_interval(db: DB) -> None:
    calls = 0
    real = db.engine.connect

    def counting_connect():  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real()

    db.engine.connect = counting_connect  # type: ignore[method-assign]
    try:
        for _ in range(5):
            metrics.refresh_gauges(db, 3600)
    finally:
        db.engine.connect = real  # type: ignore[method-assign]
    assert calls == 1
