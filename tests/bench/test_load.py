"""The locust load benchmark (bench/load.py) in a tiny configuration against the real api."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from ballast_testing.servers import PostgresServer
from bench import load

pytestmark = [
    pytest.mark.bench,
    pytest.mark.integration,
    pytest.mark.serial,
]  # serial: a load benchmark

USERS = 3


def test_tiny_load_run_answers_every_request(postgres_server: PostgresServer) -> None:
    name = f"ballast_load_{secrets.token_hex(6)}"
    url = postgres_server.create_database(name)
    try:
        result = load.measure(url, users=USERS, spawn_rate=USERS, duration_s=10)
    finally:
        postgres_server.drop_database(name)

    # The contract keys of bench/results/load.json, all numbers.
    for key in load.RESULT_KEYS:
        assert isinstance(result[key], int | float), (key, result[key])
    assert json.loads(json.dumps(result)) == result
    assert result["users"] == USERS
    assert result["failures"] == 0, result["failure_samples"]
    # No user logged in twice, and the run did work. (How many users got through their
    # login within the 10 s depends on the machine: a busy one spawns users late; a login
    # in flight at the end finishes and counts, see load.STOP_TIMEOUT_S.)
    logins = result["endpoints"].get("POST /v1/sessions", {}).get("requests", 0)
    assert 1 <= logins <= USERS, result
    assert result["requests"] >= logins
    assert result["requests"] == sum(
        e["requests"] for e in result["endpoints"].values()
    )
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["rps"] > 0
    assert result["api_workers"] == load.production_settings()["workers"]


def test_load_target_must_be_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        load.run_locust(
            "http://10.0.0.1:8000",
            users=1,
            spawn_rate=1,
            duration_s=1,
            workdir=tmp_path,
        )
