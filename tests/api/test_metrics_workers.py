"""`/metrics` of an api running several uvicorn workers reports the pod's totals, on
the metrics port (the main port, which the Ingress routes, answers 404).

Each worker is a process of its own; without a shared multi-process store a scrape
would see only the worker that answered it, and the totals would jump between scrapes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ballast_common.db import DB
from ballast_testing.api import api_process
from ballast_testing.servers import free_port
from tests.api.conftest import _seeded

pytestmark = pytest.mark.integration

REQUESTS = 60


def _healthz_total(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "ballast_http_requests_total"
                and sample.labels.get("route") == "/healthz"
            ):
                total += sample.value
    return total


def test_two_workers_export_one_total(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/api.db"
    _seeded(DB(url)).dispose()
    metrics_port = free_port()
    env = {
        "BALLAST_PATHS__DATA_DIR": str(tmp_path / "data"),
        "BALLAST_API__METRICS_PORT": str(metrics_port),
    }
    with api_process(url, workers=2, env=env, log_path=tmp_path / "api.log") as base:
        # New connections spread over both workers (the kernel picks the acceptor).
        for _ in range(REQUESTS):
            with httpx.Client(base_url=base, timeout=10) as client:
                assert client.get("/healthz").status_code == 200
                assert client.get("/metrics").status_code == 404
        totals = []
        scrape = f"http://127.0.0.1:{metrics_port}/metrics"
        for _ in range(10):
            with httpx.Client(timeout=10) as client:
                resp = client.get(scrape)
                assert resp.status_code == 200
                totals.append(_healthz_total(resp.text))
    # Every scrape, whichever worker answered it, counts every request of the pod
    # (plus the health probes api_process made while waiting for the start).
    assert min(totals) >= REQUESTS
    assert max(totals) - min(totals) == 0, totals


def test_a_taken_metrics_port_is_a_one_line_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/api.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,  # noqa: TID251 - the child inherits our environment
            "BALLAST_DATABASE__URL": url,
            "BALLAST_API__PORT": str(free_port()),
            "BALLAST_API__METRICS_PORT": str(port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "ballast_api"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    )
