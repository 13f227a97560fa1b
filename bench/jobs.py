"""Jobs benchmark: the real api and real workers on PostgreSQL and Redis.

Writes bench/results/jobs.json with
- start_p50_ms, start_p95_ms: POST /v1/jobs -> the job is RUNNING (its started_at),
  one job at a time on an idle worker;
- bare_p95_ms: a bare Celery send -> task started round trip on the same broker and
  worker, same run (target: start_p95_ms <= 1.5 x bare_p95_ms + 10);
- jobs_per_s: 1,000 trivial jobs posted by 8 clients, first POST -> last COMPLETED;
- chaos_jobs, chaos_lost, chaos_duplicated: 1,000 jobs while worker processes are
  SIGKILLed at random (whole workers and single pool processes) and restarted; lost =
  not COMPLETED at the end, duplicated = completed more than once (targets: 0 and 0);
- import_peak_rss_mb_200mb_csv: peak resident memory (VmHWM) of a child process
  importing a 200 MB CSV generated at bench time, the way a worker does
  (`ballast_jobs.datasets.import_file`, default settings; target < 500).
  `python -m bench.jobs import` measures only this and updates the result file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import redis
from celery import Celery  # type: ignore[import-untyped]
from sqlalchemy import func, select

from ballast_common.db import DB, migrate, run_tx
from ballast_common.models import AuditLog, Job
from ballast_common.seed import seed_demo
from ballast_testing.servers import LocalPostgres, throwaway_redis
from bench.common import RESULTS, api_process, percentile, write_result

SAMPLES = 200
WARMUP = 20
THROUGHPUT_JOBS = 1000
CHAOS_JOBS = 1000
CLIENTS = 8
TRIVIAL = {"name": "demo.sleep", "kwargs": {"seconds": 0, "steps": 1}}
# Short leases so killed workers' jobs come back within seconds.
FAST = {
    "BALLAST_JOBS__HEARTBEAT_S": "0.3",
    "BALLAST_JOBS__LEASE_S": "2",
    "BALLAST_JOBS__SWEEP_INTERVAL_S": "0.25",
    "BALLAST_JOBS__REDISPATCH_AFTER_S": "30",
}


class Workers:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ballast_jobs", "worker", "-c", str(concurrency)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        for proc in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry.name))
    return out


def _wait_worker_ready(db: DB, client: httpx.Client, timeout: float = 60) -> None:
    """Until a trivial job completes (the worker consumes)."""
    job_id = client.post("/v1/jobs", json=TRIVIAL).json()["id"]
    _wait_done(db, [uuid.UUID(job_id)], timeout)


def _wait_done(db: DB, ids: list[uuid.UUID], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            left = conn.execute(
                select(func.count())
                .select_from(Job)
                .where(
                    Job.id.in_(ids),
                    Job.status.not_in(["COMPLETED", "FAILED", "CANCELLED"]),
                )
            ).scalar_one()
            conn.rollback()
            if left == 0:
                return
            time.sleep(0.05)
    raise RuntimeError(f"{left} jobs not finished after {timeout} s")


def _start_latencies(db: DB, client: httpx.Client, n: int) -> list[float]:
    out = []
    with db.engine.connect() as conn:
        for i in range(n + WARMUP):
            sent = time.time()
            job_id = uuid.UUID(client.post("/v1/jobs", json=TRIVIAL).json()["id"])
            while True:
                row = conn.execute(
                    select(Job.started_at, Job.status).where(Job.id == job_id)
                ).one()
                conn.rollback()
                if row.status == "COMPLETED":
                    break
                time.sleep(0.002)
            if i >= WARMUP:
                out.append((row.started_at.timestamp() - sent) * 1000)
    return out


def _bare_latencies(broker_url: str, n: int) -> list[float]:
    app = Celery("bench", set_as_current=False)
    app.conf.update(broker_url=broker_url, task_serializer="json")
    client = redis.Redis.from_url(broker_url)
    key = f"bench:{uuid.uuid4().hex}"
    out = []
    try:
        for i in range(n + WARMUP):
            sent = time.time()
            app.send_task("diag.started", args=[broker_url, key], queue="default")
            _, value = client.blpop([key], timeout=30) or (None, None)
            if value is None:
                raise RuntimeError("bare task did not start")
            if i >= WARMUP:
                out.append((float(value) - sent) * 1000)
    finally:
        client.close()
        app.close()
    return out


def _post_many(base: str, token: str, n: int) -> list[uuid.UUID]:
    per = n // CLIENTS

    def batch(k: int) -> list[uuid.UUID]:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}
        ) as c:
            return [
                uuid.UUID(c.post("/v1/jobs", json=TRIVIAL).json()["id"])
                for _ in range(per + (1 if k < n % CLIENTS else 0))
            ]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [i for ids in pool.map(batch, range(CLIENTS)) for i in ids]


@contextlib.contextmanager
def _chaos(workers: Workers, seed: int = 4) -> Iterator[dict[str, int]]:
    """Kill a random worker (or one of its pool processes) every 1.5-3.5 s (a worker
    needs ~2 s to boot: faster kills would only ever hit workers still starting)."""
    rng = random.Random(seed)
    stop = threading.Event()
    kills = {"workers": 0, "pool_processes": 0}

    def loop() -> None:
        while not stop.wait(rng.uniform(1.5, 3.5)):
            alive = workers.alive()
            if not alive:
                workers.start()
                continue
            # Only workers whose pool is up run jobs: killing one still booting would
            # test nothing (on a loaded machine a worker may take several seconds).
            ready = [(p, c) for p in alive if (c := _children(p.pid))]
            if not ready:
                continue
            victim, children = rng.choice(ready)
            if rng.random() < 0.5:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(children), signal.SIGKILL)
                kills["pool_processes"] += 1
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
                kills["workers"] += 1
                workers.start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield kills
    finally:
        stop.set()
        thread.join()


# VmHWM of the child's own memory map (ru_maxrss would include the parent's at exec).
_IMPORT_CHILD = """
import sys
from pathlib import Path
from ballast_common.config import DatasetConfig
from ballast_jobs.datasets import import_file
done = import_file(Path(sys.argv[1]), "csv", DatasetConfig(), Path(sys.argv[2]), lambda f: None)
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(done.rows, int(status.split()[0]))
"""


def import_peak_rss_mb(size_mb: int = 200) -> float:
    """Peak RSS (MB) of a fresh process importing a generated `size_mb` MB CSV."""
    with TemporaryDirectory(prefix="ballast-bench-import-") as tmp:
        src = Path(tmp) / "big.csv"
        with src.open("w") as out:
            out.write("id,amount,ratio,city,code,day,flag,note\n")
            i = 0
            while out.tell() < size_mb * 1_000_000:
                out.write(
                    "".join(
                        f"{k},{k % 100_003},{k / 7:.6f},city {k % 431},C{k % 97:03d},"
                        f"2024-{1 + k % 12:02d}-{1 + k % 28:02d},{k % 3 == 0},"
                        f"note number {k % 10_007}\n"
                        for k in range(i, i + 50_000)
                    )
                )
                i += 50_000
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_CHILD, str(src), str(Path(tmp) / "o.pq")],
            check=True,
            capture_output=True,
            text=True,
        )
        rows, peak_kb = done.stdout.split()
        print(f"(imported {int(rows):,} rows, {src.stat().st_size / 1e6:.0f} MB)")
        return round(int(peak_kb) / 1024, 1)


def run_import() -> dict[str, Any]:
    """Only the import measurement, merged into an existing result file."""
    path = RESULTS / "jobs.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result["import_peak_rss_mb_200mb_csv"] = import_peak_rss_mb()
    write_result("jobs", result)
    return dict(result)


def run() -> dict[str, Any]:
    with (
        LocalPostgres.throwaway({"max_connections": "300"}) as pg,
        throwaway_redis() as rds,
        TemporaryDirectory(prefix="ballast-bench-jobs-") as tmp,
    ):
        url = pg.create_database("ballast_bench_jobs")
        db = DB(url)
        migrate(db=db)
        run_tx(seed_demo, db=db)
        env_extra = {
            "BALLAST_JOBS__BROKER_URL": rds.url,
            "BALLAST_PATHS__DATA_DIR": str(Path(tmp) / "data"),
        }
        env = {
            # Workers inherit the bench environment plus its settings.
            **os.environ,  # noqa: TID251
            "BALLAST_DATABASE__URL": url,
            "BALLAST_LOG_LEVEL": "WARNING",
            **env_extra,
            **FAST,
        }
        workers = Workers(env, Path(tmp))
        try:
            with api_process(url, env=env_extra) as base:
                token = httpx.post(
                    f"{base}/v1/sessions",
                    json={"username": "editor", "password": "editor-demo-pass"},
                ).json()["token"]
                client = httpx.Client(
                    base_url=base, headers={"Authorization": f"Bearer {token}"}
                )
                workers.start()
                _wait_worker_ready(db, client)
                starts = _start_latencies(db, client, SAMPLES)
                bare = _bare_latencies(rds.url, SAMPLES)

                t0 = time.monotonic()
                ids = _post_many(base, token, THROUGHPUT_JOBS)
                _wait_done(db, ids, 300)
                per_s = THROUGHPUT_JOBS / (time.monotonic() - t0)

                workers.start()
                with _chaos(workers) as kills:
                    chaos_ids = _post_many(base, token, CHAOS_JOBS)
                    # Keep killing while the backlog drains.
                    time.sleep(15)
                with contextlib.suppress(RuntimeError):
                    if not workers.alive():
                        workers.start()
                    _wait_done(db, chaos_ids, 180)
                client.close()
            lost, duplicated = _chaos_outcome(db, chaos_ids)
        finally:
            workers.stop()
            db.dispose()
    start_p95 = percentile(starts, 95)
    bare_p95 = percentile(bare, 95)
    result = {
        "start_p50_ms": round(percentile(starts, 50), 3),
        "start_p95_ms": round(start_p95, 3),
        "bare_p95_ms": round(bare_p95, 3),
        "jobs_per_s": round(per_s, 1),
        "chaos_jobs": CHAOS_JOBS,
        "chaos_lost": lost,
        "chaos_duplicated": duplicated,
        "import_peak_rss_mb_200mb_csv": import_peak_rss_mb(),
    }
    write_result("jobs", result)
    print(
        f"(start target {1.5 * bare_p95 + 10:.1f} ms; chaos kills {kills})",
        flush=True,
    )
    return result


def _chaos_outcome(db: DB, ids: list[uuid.UUID]) -> tuple[int, int]:
    keys = [str(i) for i in ids]
    with db.engine.connect() as conn:
        completed = conn.execute(
            select(func.count())
            .select_from(Job)
            .where(Job.id.in_(ids), Job.status == "COMPLETED")
        ).scalar_one()
        dup = conn.execute(
            select(func.count()).select_from(
                select(AuditLog.resource_id)
                .where(
                    AuditLog.resource_id.in_(keys),
                    AuditLog.action == "job_completed",
                )
                .group_by(AuditLog.resource_id)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
    return len(ids) - int(completed), int(dup)


if __name__ == "__main__":
    print(run_import() if sys.argv[1:] == ["import"] else run())
