"""The life cycle of a job row: enqueue, transitions (one `fail`), cancel, retry, results."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from ballast_common.db.uow import UnitOfWork
from ballast_common.errors import ConflictError, NotFoundError
from ballast_common.errors import ValidationError as AppValidationError
from ballast_common.jobs.contract import (
    RETRYABLE,
    JobCreate,
    JobStatus,
    Sender,
    message_for,
)
from ballast_common.jobs.registry import TASKS, suggested_action, validate_params
from ballast_common.jobs.repository import JobRepository
from ballast_common.models import Dataset, Job, JobResult, utcnow


def is_due(job: Job, now: datetime | None = None) -> bool:
    return job.scheduled_at is None or job.scheduled_at <= (now or utcnow())


def unmet_dependencies(uow: UnitOfWork, job: Job) -> list[Job]:
    """Dependencies of `job` that are not COMPLETED (missing ones count as met: the
    enqueue check refuses unknown ids, and a deleted job cannot block others forever).
    """
    if not job.depends_on:
        return []
    ids = [uuid.UUID(str(d)) for d in job.depends_on]
    rows = JobRepository(uow.session).all_of(ids)
    return [j for j in rows if j.status != JobStatus.COMPLETED]


def _dispatch_after_commit(uow: UnitOfWork, job: Job, send: Sender | None) -> None:
    """Send `job` after commit if it is due and its dependencies are done."""
    if send is None or not is_due(job) or unmet_dependencies(uow, job):
        job.dispatched_at = None
        return
    job.dispatched_at = utcnow()
    message = message_for(job)
    uow.after_commit(lambda: send(message))


def enqueue(
    uow: UnitOfWork,
    request: JobCreate,
    *,
    created_by: uuid.UUID | None,
    send: Sender | None,
    params: Mapping[str, Any] | None = None,
    max_timeout: int | None = None,
    project_id: uuid.UUID | None = None,
) -> Job:
    """Add a PENDING job in this transaction; its message is sent after commit.

    Args:
        uow: the caller's transaction (the job commits with the request's other writes).
        request: what to run.
        created_by: the owner.
        project_id: the project the job works on (who may see and change the job
            follows it; the api checks the caller may change that project).
        send: sends the message after commit (None: leave it to the sweeper).
        params: already validated parameters (default: validate `request.kwargs`).
        max_timeout: the longest time limit a worker allows (``jobs.soft_time_limit``):
            the broker's visibility timeout and the worker's shutdown grace are sized
            for it. A task's default is capped to it; a longer requested one is refused.

    Raises:
        ValidationError: unknown task, bad parameters, unknown dependency, a timeout
            longer than ``max_timeout``.
    """
    kwargs = (
        dict(params)
        if params is not None
        else validate_params(request.name, request.kwargs)
    )
    spec = TASKS[request.name]
    timeout = request.timeout or spec.default_timeout
    if max_timeout is not None:
        if request.timeout is not None and request.timeout > max_timeout:
            raise AppValidationError(
                f"timeout {request.timeout} s is longer than workers allow "
                f"({max_timeout} s, the jobs.soft_time_limit setting)",
                details={"fields": ["timeout"], "max": max_timeout},
            )
        timeout = min(timeout, max_timeout)
    waiting = False
    if request.depends_on:
        found = JobRepository(uow.session).statuses(request.depends_on)
        missing = [str(d) for d in request.depends_on if d not in found]
        if missing:
            raise AppValidationError(
                f"depends_on names unknown job(s): {', '.join(missing)}",
                details={"fields": ["depends_on"], "missing": missing},
            )
        waiting = any(status != JobStatus.COMPLETED for status in found.values())
    now = utcnow()
    # Decided before the insert, so the row is written once (no UPDATE of
    # dispatched_at in the same transaction: one round trip less on every start).
    dispatch = (
        send is not None
        and (request.scheduled_at is None or request.scheduled_at <= now)
        and not waiting
    )
    job = uow.repo(Job).create(
        name=request.name,
        args=list(request.args),
        kwargs=kwargs,
        queue=spec.queue,
        priority=request.priority,
        scheduled_at=request.scheduled_at,
        timeout=timeout,
        max_retries=request.max_retries,
        retry_delay=request.retry_delay,
        depends_on=[str(d) for d in request.depends_on],
        tags=list(request.tags),
        created_by=created_by,
        project_id=project_id,
        status=JobStatus.PENDING,
        dispatched_at=now if dispatch else None,
    )
    if dispatch and send is not None:
        message = message_for(job)
        uow.after_commit(lambda: send(message))
    return job


def transition(uow: UnitOfWork, job: Job, action: str, **values: Any) -> None:
    """Change a job's columns with a version bump and one audit row named `action`.

    Job state changes are audited as named transitions (job_started, job_completed...);
    progress and heartbeats are not (they are not user writes and would flood the log).
    """
    old = {k: getattr(job, k) for k in values}
    for key, value in values.items():
        setattr(job, key, value)
    job.version += 1
    job.updated_at = utcnow()
    uow.flush()
    uow.audit(action, "jobs", str(job.id), old=old, new=values)
    settle = _SETTLE.get(job.name)
    if settle is not None and "status" in values:
        settle(uow, job, action)


def _settle_import(uow: UnitOfWork, job: Job, action: str) -> None:
    """Keep a dataset's status in step with its import job, in the same transaction:
    whoever ends the job (the run itself, a cancel of a queued job, the sweeper's forced
    cancel or time limit, the claim giving up on a dying worker) ends the import too, so
    a dataset never stays PENDING or IMPORTING behind a finished job."""
    try:
        dataset_id = uuid.UUID(str(job.kwargs.get("dataset_id")))
    except ValueError:
        return
    dataset = uow.session.execute(
        select(Dataset).where(Dataset.id == dataset_id).with_for_update()
    ).scalar_one_or_none()
    if dataset is None or dataset.deleted_at is not None:
        return
    values: dict[str, Any]
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        if dataset.status not in ("PENDING", "IMPORTING"):
            return
        cancelled = job.status == JobStatus.CANCELLED
        values = {
            "status": job.status,
            "error_code": "job_cancelled" if cancelled else job.error_code,
            "error_message": (
                "the import was cancelled" if cancelled else job.error_message
            ),
        }
    elif action == "job_retried" and dataset.status in ("FAILED", "CANCELLED"):
        values = {"status": "PENDING", "error_code": None, "error_message": None}
    else:
        return
    uow.repo(Dataset).update_entity(dataset, values)


# Per task name: keeps the task's own rows in step with its job's status changes.
_SETTLE: Mapping[str, Callable[[UnitOfWork, Job, str], None]] = {
    "datasets.import": _settle_import
}


def request_cancel(uow: UnitOfWork, job: Job) -> Job:
    """Cancel: a PENDING job is CANCELLED at once; a RUNNING one gets the cooperative
    flag its task checks, and is terminated by the sweeper after the grace period.
    Cancelling a finished job is refused (409); cancelling twice is not an error.
    """
    if job.status == JobStatus.PENDING:
        now = utcnow()
        transition(
            uow,
            job,
            "job_cancelled",
            status=JobStatus.CANCELLED,
            cancel_requested_at=now,
            completed_at=now,
        )
    elif job.status == JobStatus.RUNNING:
        if job.cancel_requested_at is None:
            transition(uow, job, "job_cancel_requested", cancel_requested_at=utcnow())
    elif job.status != JobStatus.CANCELLED:
        raise ConflictError(
            f"job {job.id} is already {job.status.lower()}",
            current={"status": job.status},
            attempted={"status": JobStatus.CANCELLED},
            code="job_finished",
        )
    return job


def retry(uow: UnitOfWork, job: Job, *, send: Sender | None) -> Job:
    """Run a FAILED or CANCELLED job again (same id, a new attempt); 409 otherwise."""
    if job.status not in RETRYABLE:
        raise ConflictError(
            f"only failed or cancelled jobs can be retried; job {job.id} is {job.status.lower()}",
            current={"status": job.status},
            attempted={"status": JobStatus.PENDING},
            code="job_not_retryable",
        )
    transition(
        uow,
        job,
        "job_retried",
        status=JobStatus.PENDING,
        progress=0.0,
        progress_message="",
        error_code=None,
        error_message=None,
        error_action=None,
        trace_id=None,
        cancel_requested_at=None,
        started_at=None,
        completed_at=None,
        retry_count=0,
        lost_runs=0,
        scheduled_at=None,
        heartbeat_at=None,
    )
    uow.session.execute(delete(JobResult).where(JobResult.job_id == job.id))
    _dispatch_after_commit(uow, job, send)
    uow.flush()
    return job


def get_result(uow: UnitOfWork, job: Job) -> dict[str, Any]:
    """The stored result of a COMPLETED job."""
    row = uow.session.get(JobResult, job.id)
    if row is None:
        raise NotFoundError(
            f"job {job.id} has no result (status {job.status.lower()})",
            details={"id": str(job.id), "status": job.status},
        )
    return dict(row.data)


def retry_backoff(job: Job, *, cap: float = 300.0) -> float:
    """Delay (in seconds) before automatic retry number ``job.retry_count + 1``:
    ``retry_delay * 2**retry_count``, capped."""
    return float(min(cap, job.retry_delay * (2**job.retry_count)))


def due_at(delay_s: float) -> datetime:
    return utcnow() + timedelta(seconds=delay_s)


def fail(
    uow: UnitOfWork,
    job: Job,
    code: str,
    message: str,
    *,
    action: str | None = None,
    at: datetime | None = None,
    **values: Any,
) -> None:
    """The one way a job becomes FAILED: the error's code, message (cut at 2,000
    characters) and what the user can do about it (`suggested_action` by default)."""
    transition(
        uow,
        job,
        "job_failed",
        status=JobStatus.FAILED,
        completed_at=at or utcnow(),
        error_code=code,
        error_message=message[:2000],
        error_action=action or suggested_action(code),
        **values,
    )
