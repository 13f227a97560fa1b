"""Worker metrics on `/metrics` (the main process of each worker).

- ``ballast_jobs_queue_depth{queue}``: jobs sent and waiting for a worker;
- ``ballast_jobs{status}``: jobs by status;
- ``ballast_job_duration_seconds{task,status}``: run time of the jobs this worker ran;
- ``ballast_job_retries_total{task}``: automatic retries scheduled on this worker.

The gauges are counted in the database (the jobs table is the truth, and this works on
every broker) by the sweeper every ``jobs.metrics_refresh_s``, under a statement timeout,
never at scrape time: a scrape and the ``/healthz`` probe only read memory, so a slow or
unreachable database never fails a probe or restarts a worker.
``ballast_jobs_metrics_age_seconds`` says how old the counts are. Durations and retries
are observed by the sweeper after each pass from the rows this worker finished, so pool
processes need no multi-process metrics directory.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from importlib.metadata import version
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from ballast_common.db import DB
from ballast_common.db.migrate import head_revision
from ballast_common.jobs import QUEUES, TERMINAL, JobStatus
from ballast_common.models import AuditLog, Job, utcnow
from ballast_common.telemetry import get_logger, get_or_create
from ballast_common.telemetry.metrics import set_build_info

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


# Longest a gauge count may run (in milliseconds, PostgreSQL) before it is given up.
COUNT_TIMEOUT_MS = 5_000


class _Gauges:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued: dict[str, int] | None = None
        self.statuses: dict[str, int] = {}
        self.at = 0.0  # time.monotonic() of the last count
        self.tried: float | None = None  # ... and of the last attempt


_gauges = _Gauges()


def refresh_gauges(
    db: DB, every_s: float, *, timeout_ms: int = COUNT_TIMEOUT_MS
) -> None:
    """Count queue depth and jobs by status, at most every ``every_s`` seconds.

    Called by the sweeper after each pass. A count that fails or times out keeps the
    previous one (its age shows on /metrics) and is tried again at the next interval.
    """
    now = time.monotonic()
    with _gauges.lock:
        if _gauges.tried is not None and now - _gauges.tried < every_s:
            return
        _gauges.tried = now
    try:
        with db.engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
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
    except Exception as exc:  # the last counts stay; the probe never depends on this
        log.warning("metrics_count_failed", error=str(exc))
        return
    with _gauges.lock:
        _gauges.queued = {str(k): int(v) for k, v in queued.items()}
        _gauges.statuses = {str(k): int(v) for k, v in statuses.items()}
        _gauges.at = time.monotonic()


def reset_gauges() -> None:
    """Forget the counts (tests)."""
    global _gauges
    _gauges = _Gauges()


class JobsCollector(Collector):
    """Queue depth and jobs by status as last counted by `refresh_gauges` (no I/O)."""

    def collect(self) -> Iterator[Any]:
        with _gauges.lock:
            queued, statuses, at = _gauges.queued, dict(_gauges.statuses), _gauges.at
        if queued is None:
            return  # not counted yet: no series rather than made-up zeros
        depth = GaugeMetricFamily(
            "ballast_jobs_queue_depth",
            "Jobs sent to a queue and not started yet.",
            labels=["queue"],
        )
        by_status = GaugeMetricFamily(
            "ballast_jobs", "Jobs by status.", labels=["status"]
        )
        for queue in sorted(set(QUEUES) | set(queued)):
            depth.add_metric([queue], float(queued.get(queue, 0)))
        for status in JobStatus:
            by_status.add_metric([str(status)], float(statuses.get(str(status), 0)))
        yield depth
        yield by_status
        yield GaugeMetricFamily(
            "ballast_jobs_metrics_age_seconds",
            "Seconds since the queue and status gauges were counted.",
            value=max(0.0, time.monotonic() - at),
        )

    def describe(self) -> Iterator[Any]:
        return iter(())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no access log."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def probe_app(metrics_app: Callable[..., Any]) -> Callable[..., Any]:
    """`/healthz` answers from memory (liveness); every other path is the metrics."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return metrics_app(environ, start_response)

    return app


_served: dict[int, Any] = {}


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's probes
    """Serve /metrics (the default registry plus the jobs gauges) and /healthz."""
    if port in _served:
        return
    REGISTRY.register(JobsCollector())
    duration_histogram()
    retries_counter()
    # The dashboards' release annotations and the versions-by-colour table.
    set_build_info("worker", version("ballast-jobs"), head_revision() or "")
    server = make_server(
        addr, port, probe_app(make_wsgi_app()), _Server, handler_class=_QuietHandler
    )
    threading.Thread(
        target=server.serve_forever, name="ballast-metrics", daemon=True
    ).start()
    _served[port] = server
