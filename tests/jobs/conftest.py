"""A real worker process (`python -m ballast_jobs worker`) against real Redis and
PostgreSQL. Jobs are enqueued through `ballast_common.jobs.enqueue`, exactly as the api
does (row first, message after commit)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery  # type: ignore[import-untyped]
from sqlalchemy import func, select

from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, migrate, run_tx
from ballast_common.jobs import (
    TERMINAL,
    JobCreate,
    broker_settings,
    enqueue,
    request_cancel,
)
from ballast_common.models import AuditLog, Job, JobResult
from ballast_jobs.dispatch import WorkerSender
from ballast_testing.servers import PostgresServer, RedisServer, free_port

# Short leases and sweeps so failure recovery takes seconds in tests.
FAST = {
    "BALLAST_JOBS__HEARTBEAT_S": "0.3",
    "BALLAST_JOBS__LEASE_S": "2",
    "BALLAST_JOBS__SWEEP_INTERVAL_S": "0.2",
    "BALLAST_JOBS__PROGRESS_INTERVAL_S": "0.1",
    "BALLAST_JOBS__CANCEL_GRACE_S": "1.5",
    "BALLAST_JOBS__REDISPATCH_AFTER_S": "30",
    "BALLAST_JOBS__METRICS_REFRESH_S": "0.2",
}


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    metrics_url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool children."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    """A database, a broker, and the workers started on them."""

    db: DB
    config: AppConfig
    env: dict[str, str]
    tmp: Path
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = Celery("tests", set_as_current=False)
        self.client.conf.update(broker_settings(self.config))
        self.sender = WorkerSender(self.client, self.config)

    def start_worker(self, concurrency: int = 2, **extra: str) -> Worker:
        port = free_port()
        log = self.tmp / f"worker-{len(self.workers)}.log"
        env = {
            # The child inherits the test environment plus the stack's settings.
            **os.environ,  # noqa: TID251
            **self.env,
            "BALLAST_JOBS__METRICS_PORT": str(port),
            **extra,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ballast_jobs",
                    "worker",
                    "-c",
                    str(concurrency),
                    "--loglevel",
                    "WARNING",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(proc, f"http://127.0.0.1:{port}/metrics", log)
        self.workers.append(worker)
        # Generous: a worker boots in ~3 s, but a loaded CI machine can take much longer.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{log.read_text()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(worker.metrics_url, timeout=1),
            ):
                return worker
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready:\n{log.read_text()}")

    def enqueue(self, name: str = "demo.sleep", **body: Any) -> uuid.UUID:
        request = JobCreate(name=name, **body)
        return run_tx(
            lambda uow: enqueue(uow, request, created_by=None, send=self.sender).id,
            db=self.db,
        )

    def job(self, job_id: uuid.UUID) -> Job:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def wait(
        self,
        job_id: uuid.UUID,
        until: Callable[[Job], bool] = lambda j: j.status in TERMINAL,
        timeout: float = 20.0,
    ) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            if time.monotonic() > deadline:
                logs = "\n".join(w.log.read_text()[-3000:] for w in self.workers)
                raise AssertionError(
                    f"job {job_id} stuck: {job.status} {job.progress} "
                    f"{job.error_code} {job.error_message}\n{logs}"
                )
            time.sleep(0.05)

    def audits(self, job_id: uuid.UUID, action: str) -> int:
        with self.db.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(AuditLog)
                    .where(
                        AuditLog.resource_id == str(job_id), AuditLog.action == action
                    )
                ).scalar_one()
            )

    def results(self, job_id: uuid.UUID) -> list[dict[str, Any]]:
        with self.db.session() as session:
            rows = session.execute(
                select(JobResult).where(JobResult.job_id == job_id)
            ).scalars()
            return [dict(r.data) for r in rows]

    def cancel(self, job_id: uuid.UUID) -> Job:
        """Ask for a cancel, as the api does."""

        def work(uow: UnitOfWork) -> Job:
            job = uow.session.get(Job, job_id, with_for_update=True)
            assert job is not None
            return request_cancel(uow, job)

        return run_tx(work, db=self.db)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.client.close()
        self.db.dispose()


_redis_dbs = iter(range(1, 16))


@contextlib.contextmanager
def stacks(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp: Path
) -> Iterator[Callable[..., Stack]]:
    """Factory of private stacks: a fresh PostgreSQL database and Redis database each."""
    made: list[tuple[Stack, str, str]] = []

    def factory(**settings: str) -> Stack:
        name = f"ballast_jobs_{secrets.token_hex(5)}"
        url = postgres_server.create_database(name)
        db = DB(url)
        migrate(db=db)
        broker = redis_server.url.rsplit("/", 1)[0] + f"/{next(_redis_dbs)}"
        root = tmp / name
        env = {
            "BALLAST_DATABASE__URL": url,
            "BALLAST_JOBS__BROKER_URL": broker,
            "BALLAST_PATHS__DATA_DIR": str(root / "data"),
            "BALLAST_LOG_LEVEL": "WARNING",
            **FAST,
            **settings,
        }
        root.mkdir(parents=True)
        config = AppConfig(
            database={"url": url},
            jobs={"broker_url": broker},
            paths={"data_dir": root / "data"},
        )
        stack = Stack(db, config, env, root)
        made.append((stack, name, broker))
        return stack

    try:
        yield factory
    finally:
        for stack, name, broker in made:
            stack.close()
            postgres_server.drop_database(name)
            client = redis.Redis.from_url(broker)
            try:
                client.flushdb()
            finally:
                client.close()


@pytest.fixture
def make_stack(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[Callable[..., Stack]]:
    """Factory of private stacks for one test (which may kill their workers)."""
    with stacks(postgres_server, redis_server, tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module")
def shared(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One stack with one worker (prefork, two processes) for a whole module."""
    with stacks(postgres_server, redis_server, tmp_path_factory.mktemp("jobs")) as f:
        s = f()
        s.start_worker()
        yield s
