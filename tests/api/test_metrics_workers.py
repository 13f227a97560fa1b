"""`/metrics` of an api running several uvicorn workers reports the pod's totals.

Each worker is a process of its own; without a shared multi-process store a scrape
would see only the worker that answered it, and the totals would jump between scrapes.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ballast_common.db import DB
from ballast_testing.api import api_process
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
    env = {"BALLAST_PATHS__DATA_DIR": str(tmp_path / "data")}
    with api_process(url, workers=2, env=env, log_path=tmp_path / "api.log") as base:
        # New connections spread over both workers (the kernel picks the acceptor).
        for _ in range(REQUESTS):
            with httpx.Client(base_url=base, timeout=10) as client:
                assert client.get("/healthz").status_code == 200
        totals = []
        for _ in range(10):
            with httpx.Client(base_url=base, timeout=10) as client:
                totals.append(_healthz_total(client.get("/metrics").text))
    # Every scrape, whichever worker answered it, counts every request of the pod
    # (plus the health probes api_process made while waiting for the start).
    assert min(totals) >= REQUESTS
    assert max(totals) - min(totals) == 0, totals
