"""Load benchmark: locust (headless, its own process) against the real api on PostgreSQL.

100 users for 2 minutes (spawned 20 per second) run bench/locustfile.py: log in once, then
list/read projects, save/read drafts, save/load forms and track events with 0.5-1.5 s
between tasks. The api is `python -m ballast_api` in prod mode with the chart's production
worker count and pool size, on a throwaway PostgreSQL with default durability.

Writes bench/results/load.json with
- users, requests, failures, p50_ms, p95_ms, p99_ms, rps (locust's Aggregated row);
- duration_s, api_workers, db_pool_size, and per endpoint requests/failures/p50/p95/p99;
- failure_samples: the first few distinct failures (empty when failures == 0).
Target: failures == 0 and p95_ms <= 250 on a 2-core machine.
"""

from __future__ import annotations

import csv
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from ballast_testing.servers import LocalPostgres
from bench.common import api_process, write_result

USERS = 100
SPAWN_RATE = 20
DURATION_S = 120
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
CHART_VALUES = Path(__file__).resolve().parent.parent / "charts/ballast/values.yaml"
STOP_TIMEOUT_S = 30
RESULT_KEYS = ("users", "requests", "failures", "p50_ms", "p95_ms", "p99_ms", "rps")


def production_settings() -> dict[str, int]:
    """The api's production worker count and pool size: the chart's defaults."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    return {
        "workers": int(values["api"]["workers"]),
        "pool_size": int(values["database"]["poolSize"]),
    }


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


def parse_stats(stats_csv: Path) -> dict[str, Any]:
    """Locust's `<prefix>_stats.csv`: the Aggregated row plus one entry per endpoint."""
    with stats_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))

    def entry(row: dict[str, str]) -> dict[str, float]:
        return {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "p50_ms": _number(row["50%"]),
            "p95_ms": _number(row["95%"]),
            "p99_ms": _number(row["99%"]),
        }

    total = [r for r in rows if r["Name"] == "Aggregated"]
    if len(total) != 1:
        raise RuntimeError(f"{stats_csv}: no Aggregated row")
    result: dict[str, Any] = {
        **entry(total[0]),
        "rps": round(_number(total[0]["Requests/s"]), 1),
        "endpoints": {r["Name"]: entry(r) for r in rows if r["Name"] != "Aggregated"},
    }
    return result


def _failure_samples(failures_csv: Path, limit: int = 5) -> list[str]:
    if not failures_csv.exists():
        return []
    with failures_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: -int(r["Occurrences"]))
    return [
        f"{r['Method']} {r['Name']}: {r['Error']} (x{r['Occurrences']})"
        for r in rows[:limit]
    ]


def run_locust(
    base: str, *, users: int, spawn_rate: int, duration_s: int, workdir: Path
) -> dict[str, Any]:
    """Run locust headless in a child process against `base` and parse its CSV stats."""
    if not base.startswith(("http://127.0.0.1:", "http://[::1]:")):
        raise ValueError(f"load target must be on loopback: {base}")
    prefix = workdir / "load"
    log_path = workdir / "locust.log"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        f"{duration_s}s",
        # At the end of the run, requests in flight (a login on a busy machine) finish
        # and are counted instead of being cut off.
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        "--host",
        base,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "INFO",
    ]
    t0 = time.monotonic()
    with log_path.open("wb") as log:
        # Its own session: the whole locust process group is ended by its pid below.
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=duration_s + STOP_TIMEOUT_S + 120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    elapsed = time.monotonic() - t0
    stats_csv = prefix.with_name("load_stats.csv")
    # Locust exits 1 when any request failed; those are counted, not fatal.
    if rc not in (0, 1) or not stats_csv.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"locust exited {rc}:\n{tail}")
    result = parse_stats(stats_csv)
    if result["requests"] == 0:
        # A run that did no work measured nothing: say why (locust's own log).
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"locust recorded no request in {elapsed:.1f} s (rc {rc}):\n{tail}"
        )
    result["failure_samples"] = _failure_samples(prefix.with_name("load_failures.csv"))
    result["duration_s"] = round(elapsed, 1)
    return result


def measure(
    database_url: str,
    *,
    users: int = USERS,
    spawn_rate: int = SPAWN_RATE,
    duration_s: int = DURATION_S,
    workers: int | None = None,
    pool_size: int | None = None,
) -> dict[str, Any]:
    """Migrate and seed `database_url`, start the api on it, run the load; the result."""
    prod = production_settings()
    workers = prod["workers"] if workers is None else workers
    pool_size = prod["pool_size"] if pool_size is None else pool_size
    db = DB(database_url)
    try:
        migrate(db=db)
        run_tx(seed_demo, db=db)
    finally:
        db.dispose()
    with tempfile.TemporaryDirectory(prefix="ballast-load-") as tmp:
        workdir = Path(tmp)
        env = {
            "BALLAST_ENV": "prod",
            "BALLAST_SECURITY__SECRET_KEY": secrets.token_hex(24),
            "BALLAST_DATABASE__POOL_SIZE": str(pool_size),
            "BALLAST_PATHS__DATA_DIR": str(workdir / "data"),
            "BALLAST_PATHS__BACKUP_PATH": str(workdir / "data/backups"),
            "BALLAST_PATHS__LOG_PATH": str(workdir / "data/log"),
        }
        with api_process(database_url, workers=workers, env=env) as base:
            stats = run_locust(
                base,
                users=users,
                spawn_rate=spawn_rate,
                duration_s=duration_s,
                workdir=workdir,
            )
    return {
        "users": users,
        **stats,
        "spawn_rate": spawn_rate,
        "run_time_s": duration_s,
        "api_workers": workers,
        "db_pool_size": pool_size,
    }


def run() -> dict[str, Any]:
    with LocalPostgres.throwaway({"fsync": "on", "max_connections": "200"}) as pg:
        result = measure(pg.create_database("ballast_load"))
    write_result("load", result)
    return result


if __name__ == "__main__":
    print(run())
