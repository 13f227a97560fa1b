import importlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, Counter

from ballast_common.telemetry import metrics
from ballast_common.telemetry.metrics import (
    DB_POOL_STATES,
    HTTP_DURATION_BUCKETS,
    db_pool_gauge,
    get_or_create,
    http_metrics,
    serve_metrics,
    set_db_pool_stats,
)


@pytest.fixture(autouse=True)
def _the_multiprocess_setting_does_not_outlive_a_test() -> Iterator[None]:
    """A test here may set it while it runs; nothing after may see it (a process in
    multi-process mode fails on a directory that is gone). Checked after every test
    of this module, whatever order they run in."""
    before = os.environ.get(metrics.MULTIPROC_ENV)  # noqa: TID251
    yield
    assert os.environ.get(metrics.MULTIPROC_ENV) == before  # noqa: TID251


def test_http_metrics_are_singletons_and_record() -> None:
    first = http_metrics()
    assert http_metrics() is first
    labels = {"service": "api", "method": "GET", "route": "/projects/{id}"}
    before = (
        REGISTRY.get_sample_value(
            "ballast_http_requests_total", {**labels, "status": "200"}
        )
        or 0
    )
    first.requests.labels(status="200", **labels).inc()
    first.duration.labels(**labels).observe(0.003)
    assert (
        REGISTRY.get_sample_value(
            "ballast_http_requests_total", {**labels, "status": "200"}
        )
        == before + 1
    )
    assert REGISTRY.get_sample_value(
        "ballast_http_request_duration_seconds_bucket", {**labels, "le": "0.005"}
    )
    assert HTTP_DURATION_BUCKETS[0] == 0.001
    assert HTTP_DURATION_BUCKETS[-1] == 10.0


def test_reimport_does_not_raise_duplicated_timeseries() -> None:
    requests = http_metrics().requests
    reloaded = importlib.reload(metrics)
    assert reloaded.http_metrics().requests is requests
    assert reloaded.db_pool_gauge() is db_pool_gauge()


def test_get_or_create_builds_once() -> None:
    calls: list[int] = []

    def build() -> Counter:
        calls.append(1)
        return Counter("ballast_test_get_or_create_total", "test", registry=REGISTRY)

    assert get_or_create("ballast_test_get_or_create_total", build) is get_or_create(
        "ballast_test_get_or_create_total", build
    )
    assert calls == [1]


def test_db_pool_stats() -> None:
    set_db_pool_stats("jobs", checked_out=3, idle=2, overflow=1, size=5)
    values = {
        state: REGISTRY.get_sample_value(
            "ballast_db_pool_connections", {"service": "jobs", "state": state}
        )
        for state in DB_POOL_STATES
    }
    assert values == {"checked_out": 3, "idle": 2, "overflow": 1, "size": 5}


def test_multiprocess_dir_is_made_or_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = metrics
    # Set, then removed: monkeypatch records the variable and takes away whatever
    # prepare_multiprocess_dir puts there (later tests and their children must not
    # inherit a removed directory).
    monkeypatch.setenv(m.MULTIPROC_ENV, "unset-below")
    monkeypatch.delenv(m.MULTIPROC_ENV)
    assert m.prepare_multiprocess_dir(1) is None
    made = m.prepare_multiprocess_dir(2)
    assert made is not None
    assert made.is_dir()
    assert os.environ[m.MULTIPROC_ENV] == str(made)  # noqa: TID251
    made.rmdir()
    # An operator's directory: kept, but values of an earlier run are removed.
    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old")
    (given / "keep.txt").write_text("not ours")
    monkeypatch.setenv(m.MULTIPROC_ENV, str(given))
    assert m.prepare_multiprocess_dir(4) is None
    assert sorted(p.name for p in given.iterdir()) == ["keep.txt"]
    # In multi-process mode the exposition reads the directory (empty: no samples).
    body, content_type = m.exposition()
    assert content_type.startswith("text/plain")
    assert b"ballast_http_requests_total" not in body


def test_the_multiprocess_setting_does_not_outlive_its_test() -> None:
    # The test above sets it while it runs; nothing after may see it (a process in
    # multi-process mode fails on a directory that is gone).
    assert metrics.MULTIPROC_ENV not in os.environ  # noqa: TID251


def test_serve_metrics_answers_get_metrics_only() -> None:
    http_metrics().requests.labels("unit", "GET", "/served", "200").inc()
    server = serve_metrics(0)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        resp = httpx.get(base + "/metrics", timeout=5)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=")
        assert 'route="/served"' in resp.text
        assert httpx.head(base + "/metrics", timeout=5).content == b""
        for method, path in (("GET", "/"), ("GET", "/metrics/x"), ("POST", "/metrics")):
            assert httpx.request(method, base + path, timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_serve_metrics_on_a_taken_port_raises() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            serve_metrics(taken.getsockname()[1])
