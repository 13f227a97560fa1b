"""Worker metrics on `/metrics` (the main process of each worker).

- ``ballast_jobs_queue_depth{queue}``: jobs sent and waiting for a worker;
- ``ballast_jobs{status}``: jobs by status;
- ``ballast_job_duration_seconds{task,status}``: run time of the jobs this worker ran;
- ``ballast_job_retries_total{task}``: automatic retries scheduled on this worker.

The gauges are read from the database at scrape time (the jobs table is the truth, and
this works on every broker). Durations and retries are observed by the sweeper after
each pass from the rows this worker finished, so pool processes need no
multi-process metrics directory.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ballast_common.db import DB
from ballast_common.jobs import QUEUES, TERMINAL, JobStatus
from ballast_common.models import AuditLog, Job, utcnow
from ballast_common.telemetry import get_logger, get_or_create

log = get_logger(__name__)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)


def duration_histogram() -> Histogram:
    return get_or_create(
        "ballast_job_duration_seconds",
        lambda: Histogram(
            "ballast_job_duration_seconds",
            "Job run time (in seconds), by task and final status.",
            ("task", "status"),
            buckets=DURATION_BUCKETS,
            registry=REGISTRY,
        ),
    )


def retries_counter() -> Counter:
    return get_or_create(
        "ballast_job_retries_total",
        lambda: Counter(
            "ballast_job_retries_total",
            "Automatic retries scheduled after transient errors, by task.",
            ("task",),
            registry=REGISTRY,
        ),
    )


# A finished job's row carries its completion time from before its commit; rows
# become visible a little after that time (a commit takes milliseconds, seconds on a
# very busy database). Each pass looks back this far and skips what it has counted.
OVERLAP_S = 5.0
# Passes run at most this often (the sweeper runs more often; scrapes are ~15 s apart).
OBSERVE_EVERY_S = 1.0


class _Watermark:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: datetime = utcnow()
        self.worker: str | None = None
        # (job id, completion time) and audit ids already counted, within the overlap.
        self.jobs: dict[tuple[uuid.UUID, datetime], datetime] = {}
        self.audits: dict[int, datetime] = {}
        self.last_pass = 0.0


_mark = _Watermark()


def set_worker(name: str | None) -> None:
    _mark.worker = name


def observe(db: DB) -> None:
    """Record durations and retries of jobs this worker finished since the last call.

    Every finished run is counted once, even when its commit becomes visible after a
    later pass already ran (see `OVERLAP_S`).
    """
    with _mark.lock:
        if time.monotonic() - _mark.last_pass < OBSERVE_EVERY_S:
            return
        _mark.last_pass = time.monotonic()
        _observe(db)


def _observe(db: DB) -> None:
    with db.engine.connect() as conn:
        low = _mark.since - timedelta(seconds=OVERLAP_S)
        stmt = select(
            Job.id, Job.name, Job.status, Job.started_at, Job.completed_at
        ).where(Job.completed_at > low, Job.status.in_(sorted(TERMINAL)))
        if _mark.worker:
            stmt = stmt.where(Job.worker == _mark.worker)
        hist = duration_histogram()
        newest = _mark.since
        for job_id, name, status, started, completed in conn.execute(stmt):
            if completed is None or (job_id, completed) in _mark.jobs:
                continue
            _mark.jobs[(job_id, completed)] = completed
            newest = max(newest, completed)
            if started is not None:
                seconds = max(0.0, (completed - started).total_seconds())
                hist.labels(task=name, status=status).observe(seconds)
        audits = conn.execute(
            select(AuditLog.id, AuditLog.timestamp, AuditLog.resource_id).where(
                AuditLog.action == "job_retry_scheduled", AuditLog.timestamp > low
            )
        ).all()
        fresh = [a for a in audits if a.id not in _mark.audits]
        if fresh:
            # Resolved in Python: a uuid's text form differs between databases.
            ids = {uuid.UUID(a.resource_id) for a in fresh}
            which = select(Job.id, Job.name).where(Job.id.in_(ids))
            if _mark.worker:
                which = which.where(Job.worker == _mark.worker)
            names: dict[uuid.UUID, str] = dict(conn.execute(which).tuples().all())
            counter = retries_counter()
            for audit in fresh:
                _mark.audits[audit.id] = audit.timestamp
                newest = max(newest, audit.timestamp)
                name = names.get(uuid.UUID(audit.resource_id))
                if name is not None:  # run (and retried) by this worker
                    counter.labels(task=name).inc()
        _mark.since = newest
        horizon = newest - timedelta(seconds=2 * OVERLAP_S)
        _mark.jobs = {k: t for k, t in _mark.jobs.items() if t > horizon}
        _mark.audits = {k: t for k, t in _mark.audits.items() if t > horizon}


class JobsCollector(Collector):
    """Queue depth and jobs by status, read from the database at scrape time."""

    def __init__(self, db: DB) -> None:
        self.db = db

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "ballast_jobs_queue_depth",
            "Jobs sent to a queue and not started yet.",
            labels=["queue"],
        )
        by_status = GaugeMetricFamily(
            "ballast_jobs", "Jobs by status.", labels=["status"]
        )
        try:
            with self.db.engine.connect() as conn:
                queued = dict(
                    conn.execute(
                        select(Job.queue, func.count())
                        .where(
                            Job.status == JobStatus.PENDING,
                            Job.dispatched_at.is_not(None),
                        )
                        .group_by(Job.queue)
                    )
                    .tuples()
                    .all()
                )
                statuses = dict(
                    conn.execute(select(Job.status, func.count()).group_by(Job.status))
                    .tuples()
                    .all()
                )
        except Exception as exc:  # a scrape must not fail because the database is away
            log.warning("metrics_collect_failed", error=str(exc))
            return
        for queue in sorted(set(QUEUES) | set(queued)):
            depth.add_metric([queue], float(queued.get(queue, 0)))
        for status in JobStatus:
            by_status.add_metric([str(status)], float(statuses.get(status, 0)))
        yield depth
        yield by_status

    def describe(self) -> Iterator[Any]:
        return iter(())


_served: dict[int, Any] = {}


def serve(port: int, db: DB, addr: str = "0.0.0.0") -> None:
    """Expose the default registry (plus the jobs collector) on http://addr:port/metrics."""
    if port in _served:
        return
    REGISTRY.register(JobsCollector(db))
    duration_histogram()
    retries_counter()
    _served[port] = start_http_server(port, addr=addr)
