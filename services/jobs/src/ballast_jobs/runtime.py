"""Running one job inside a task: claim, heartbeat/progress, cancel, finish.

Exactly once: a message only wakes a worker up. The worker *claims* the job in a
transaction (PENDING -> RUNNING, or a RUNNING job whose heartbeat stopped: its worker
died), which increments `attempts`; every later write of that run (progress, result,
final status) is conditional on `status = RUNNING AND attempts = <mine>`. A duplicate
or redelivered message finds the job finished or freshly claimed and does nothing; a
run that lost its claim (cancel forced, lease taken over) cannot complete the job.
The result row and the COMPLETED status commit in one transaction.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import update

from ballast_common import jobs
from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, run_tx
from ballast_common.errors import AppError, TransientError
from ballast_common.jobs.repository import JobRepository
from ballast_common.models import Job, JobResult, utcnow
from ballast_common.telemetry import get_logger, log_error

log = get_logger(__name__)

# A job whose worker died this many times in a row fails instead of running again.
MAX_LOST_RUNS = 5


class JobCancelled(Exception):
    """Raised inside a task when its job was cancelled (cooperative stop)."""


class JobLost(Exception):
    """Raised inside a task whose run no longer owns the job (forced cancel, takeover)."""


class JobFailure(AppError):
    """A permanent failure with a user-facing message and a code for the suggested action.

    Args:
        message: what went wrong, for the user.
        code: a key of `ballast_common.jobs.SUGGESTED_ACTIONS` (or any code).
        action: overrides the suggested action.
    """

    default_code = "job_failed"
    default_status = 422

    def __init__(
        self, message: str, code: str = "job_failed", action: str | None = None
    ):
        super().__init__(message, code=code)
        self.action = action or jobs.suggested_action(code)


@dataclass
class Outcome:
    """What a handler returns: result data (stored keyed by job id) and a reference."""

    data: dict[str, Any] = field(default_factory=dict)
    ref: str | None = None
    # More writes that must commit with the COMPLETED transition (e.g. dataset READY).
    apply: Callable[[UnitOfWork], None] | None = None


@dataclass
class JobContext:
    """Handed to a task's logic: its parameters, progress and cancellation."""

    job_id: uuid.UUID
    attempt: int
    name: str
    params: dict[str, Any]
    config: AppConfig
    db: DB
    # Automatic retries before this run (0 on the first run).
    retry_count: int = 0
    _progress: float = 0.0
    _message: str = ""
    _dirty: bool = False
    _cancel: bool = False
    _lost: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Writes the heartbeat now if one is due (set by run_job).
    _beat: Callable[[], None] | None = None

    def progress(
        self, fraction: float, message: str = "", *, check: bool = True
    ) -> None:
        """Report progress (0..1); written at most every `progress_interval_s`.

        Also writes the heartbeat when one is due, from the calling thread: a task that
        keeps the interpreter busy (parsing in C code that holds the GIL) may starve the
        heartbeat thread, but never itself; so a busy job calling this between chunks
        is never taken for lost.

        Args:
            fraction: done so far, 0..1.
            message: a short status line for the dashboard.
            check: raise when the job was cancelled (False only for demos of
                uncooperative tasks).

        Raises:
            JobCancelled: the job was cancelled (stop now; nothing is kept).
            JobLost: this run no longer owns the job.
        """
        with self._lock:
            value = min(1.0, max(0.0, float(fraction)))
            if value != self._progress or message != self._message:
                self._progress, self._message, self._dirty = value, message[:200], True
        if self._beat is not None:
            self._beat()
        if check:
            self.check()

    def check(self) -> None:
        """Raise if the job was cancelled or lost (call it in long loops)."""
        if self._lost:
            raise JobLost(str(self.job_id))
        if self._cancel:
            raise JobCancelled(str(self.job_id))

    @property
    def cancel_requested(self) -> bool:
        return self._cancel


Handler = Callable[[JobContext], Outcome | dict[str, Any] | None]


class _Heartbeat(threading.Thread):
    """Writes progress (throttled) and the heartbeat; reads the cancel flag."""

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.stop_event = threading.Event()
        cfg = ctx.config.jobs
        self.tick = min(cfg.progress_interval_s, cfg.heartbeat_s)
        self.heartbeat_s = cfg.heartbeat_s
        self.last_beat = time.monotonic()
        # The thread and the task (beat_if_due) both beat; one at a time.
        self._beat_lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_event.wait(self.tick):
            try:
                self.beat()
            except Exception as exc:  # a failed beat is retried on the next tick
                log.warning(
                    "heartbeat_failed", job_id=str(self.ctx.job_id), error=str(exc)
                )

    def beat_if_due(self) -> None:
        """Beat now if the last beat is a heartbeat period old (called by the task)."""
        if time.monotonic() - self.last_beat < self.heartbeat_s:
            return
        try:
            self.beat(force=True)
        except Exception as exc:  # the thread retries; the task goes on
            log.warning("heartbeat_failed", job_id=str(self.ctx.job_id), error=str(exc))

    def beat(self, force: bool = False) -> None:
        with self._beat_lock:
            self._beat(force)

    def _beat(self, force: bool) -> None:
        ctx = self.ctx
        now = time.monotonic()
        with ctx._lock:
            dirty = ctx._dirty
            values: dict[str, Any] = {"heartbeat_at": utcnow()}
            if dirty:
                values.update(progress=ctx._progress, progress_message=ctx._message)
                ctx._dirty = False
        if not (dirty or force or now - self.last_beat >= self.heartbeat_s):
            return
        self.last_beat = now
        with ctx.db.engine.begin() as conn:
            row = conn.execute(
                update(Job)
                .where(
                    Job.id == ctx.job_id,
                    Job.attempts == ctx.attempt,
                    Job.status == jobs.JobStatus.RUNNING,
                )
                .values(**values)
                .returning(Job.cancel_requested_at)
            ).first()
        if row is None:
            ctx._lost = True
        elif row[0] is not None:
            ctx._cancel = True

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------- claim


@dataclass(frozen=True)
class Claimed:
    job_id: uuid.UUID
    attempt: int
    name: str
    params: dict[str, Any]
    retry_count: int


def claim(
    db: DB,
    config: AppConfig,
    job_id: uuid.UUID,
    *,
    task_id: str | None,
    worker: str | None,
) -> Claimed | None:
    """Take the job for this run, or None when there is nothing to do (finished, taken,
    not due): the message is then simply acknowledged."""

    def work(uow: UnitOfWork) -> Claimed | None:
        job = JobRepository(uow.session).lock(job_id)
        if job is None:
            log.warning("job_missing", job_id=str(job_id))
            return None
        now = utcnow()
        lost = False
        if job.status == jobs.JobStatus.PENDING:
            if not jobs.is_due(job, now) or jobs.unmet_dependencies(uow, job):
                return None  # an early duplicate: the sweeper sends it when due
        elif job.status == jobs.JobStatus.RUNNING:
            stale = now - timedelta(seconds=config.jobs.lease_s)
            if job.heartbeat_at is not None and job.heartbeat_at >= stale:
                return None  # another run is alive: this message is a duplicate
            lost = True
        else:
            return None  # finished: a redelivered message
        if lost and job.cancel_requested_at is not None:
            _finish(uow, job, jobs.JobStatus.CANCELLED, "job_cancelled")
            return None
        lost_runs = job.lost_runs + int(lost)
        if lost_runs >= MAX_LOST_RUNS:
            jobs.fail(
                uow,
                job,
                "worker_lost",
                f"the worker running this job stopped {lost_runs} times",
            )
            return None
        values: dict[str, Any] = {
            "status": jobs.JobStatus.RUNNING,
            "attempts": job.attempts + 1,
            "lost_runs": lost_runs,
            "started_at": now,
            "heartbeat_at": now,
            "progress": 0.0,
            "progress_message": "",
            "task_id": task_id,
            "worker": worker,
            "worker_pid": os.getpid(),
        }
        jobs.transition(
            uow, job, "job_lost_restarted" if lost else "job_started", **values
        )
        return Claimed(
            job.id, job.attempts, job.name, dict(job.kwargs), job.retry_count
        )

    return run_tx(work, db=db)


def _finish(uow: UnitOfWork, job: Job, status: str, action: str, **values: Any) -> None:
    jobs.transition(uow, job, action, status=status, completed_at=utcnow(), **values)


def _owned(uow: UnitOfWork, claimed: Claimed) -> Job | None:
    job = JobRepository(uow.session).lock(claimed.job_id)
    if (
        job is None
        or job.status != jobs.JobStatus.RUNNING
        or job.attempts != claimed.attempt
    ):
        return None
    return job


def complete(db: DB, claimed: Claimed, outcome: Outcome) -> bool:
    """COMPLETED + the result row, in one transaction, if this run still owns the job."""

    def work(uow: UnitOfWork) -> bool:
        job = _owned(uow, claimed)
        if job is None:
            return False
        if outcome.apply is not None:
            outcome.apply(uow)
        uow.session.merge(
            JobResult(job_id=job.id, data=outcome.data, created_at=utcnow())
        )
        _finish(
            uow,
            job,
            jobs.JobStatus.COMPLETED,
            "job_completed",
            progress=1.0,
            result_ref=outcome.ref or f"job:{job.id}",
        )
        return True

    return run_tx(work, db=db)


def fail(
    db: DB,
    claimed: Claimed,
    *,
    code: str,
    message: str,
    action: str | None,
    trace_id: str | None,
) -> bool:
    def work(uow: UnitOfWork) -> bool:
        job = _owned(uow, claimed)
        if job is None:
            return False
        jobs.fail(uow, job, code, message, action=action, trace_id=trace_id)
        return True

    return run_tx(work, db=db)


def cancelled(db: DB, claimed: Claimed) -> bool:
    def work(uow: UnitOfWork) -> bool:
        job = _owned(uow, claimed)
        if job is None:
            return False
        _finish(uow, job, jobs.JobStatus.CANCELLED, "job_cancelled")
        return True

    return run_tx(work, db=db)


def retry_later(db: DB, claimed: Claimed, exc: TransientError, trace_id: str) -> str:
    """After a transient error: PENDING again with a backoff, or FAILED when out of retries.

    The sweeper sends the message when the delay is over (the schedule is in the
    database, so it survives worker restarts).
    """

    def work(uow: UnitOfWork) -> str:
        job = _owned(uow, claimed)
        if job is None:
            return "lost"
        if job.retry_count >= job.max_retries:
            jobs.fail(
                uow,
                job,
                "transient_exhausted",
                f"{exc.message} (after {job.retry_count} retries)",
                trace_id=trace_id,
            )
            return "failed"
        delay = exc.retry_after or jobs.retry_backoff(job)
        jobs.transition(
            uow,
            job,
            "job_retry_scheduled",
            status=jobs.JobStatus.PENDING,
            retry_count=job.retry_count + 1,
            scheduled_at=jobs.due_at(delay),
            dispatched_at=None,
            error_code="transient",
            error_message=exc.message[:2000],
            error_action=f"retrying automatically in {delay:.1f} s",
            trace_id=trace_id,
        )
        return "retry"

    return run_tx(work, db=db)


# --------------------------------------------------------------------------- run


def run_job(
    handler: Handler,
    job_id: str,
    *,
    db: DB,
    config: AppConfig,
    task_id: str | None,
    worker: str | None,
) -> str:
    """Claim `job_id`, run `handler`, and record the outcome. Returns what happened
    ("skipped", "completed", "failed", "cancelled", "retry", "lost")."""
    claimed = claim(db, config, uuid.UUID(job_id), task_id=task_id, worker=worker)
    if claimed is None:
        return "skipped"
    params: dict[str, Any] = claimed.params
    ctx = JobContext(
        job_id=claimed.job_id,
        attempt=claimed.attempt,
        name=claimed.name,
        params=params,
        config=config,
        db=db,
        retry_count=claimed.retry_count,
    )
    beat = _Heartbeat(ctx)
    ctx._beat = beat.beat_if_due
    beat.start()
    started = time.monotonic()
    bound = {"job_id": job_id, "job": claimed.name, "attempt": claimed.attempt}
    try:
        result = handler(ctx)
    except JobCancelled:
        outcome = "cancelled" if cancelled(db, claimed) else "lost"
    except JobLost:
        outcome = "lost"
    except SoftTimeLimitExceeded as exc:
        trace_id = log_error(exc, bound)
        outcome = _failed(
            fail(
                db,
                claimed,
                code="timeout",
                message="the job ran past its time limit and was stopped",
                action=None,
                trace_id=trace_id,
            )
        )
    except TransientError as exc:
        trace_id = log_error(exc, bound)
        outcome = retry_later(db, claimed, exc, trace_id)
    except JobFailure as exc:
        trace_id = log_error(exc, bound)
        outcome = _failed(
            fail(
                db,
                claimed,
                code=exc.code,
                message=exc.message,
                action=exc.action,
                trace_id=trace_id,
            )
        )
    except Exception as exc:
        trace_id = log_error(exc, bound)
        outcome = _failed(
            fail(
                db,
                claimed,
                code="internal_error",
                message=f"unexpected error ({type(exc).__name__}); quote trace id {trace_id}",
                action=None,
                trace_id=trace_id,
            )
        )
    else:
        if not isinstance(result, Outcome):
            result = Outcome(data=dict(result or {}))
        outcome = "completed" if complete(db, claimed, result) else "lost"
    finally:
        beat.stop()
    log.info(
        "job_finished",
        outcome=outcome,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        **bound,
    )
    return outcome


def _failed(recorded: bool) -> str:
    return "failed" if recorded else "lost"


def params_of(ctx: JobContext, model: type[Any]) -> Any:
    """The job's parameters as the task's pydantic model."""
    return model.model_validate(ctx.params)
