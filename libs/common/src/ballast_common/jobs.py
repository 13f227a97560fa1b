"""Background jobs: the shared contract of the api, the workers and the ui.

The `jobs` row is the truth; a Celery message is only a wake-up call carrying the job
id. `enqueue` adds the row (PENDING) in the caller's transaction and sends the message
*after commit* (`uow.after_commit`), so a worker never sees a job that is not there. A
job that is not due yet (``scheduled_at`` in the future, unfinished ``depends_on``) is
not sent at all: the worker's sweeper sends it when it becomes due. Because the sweeper
also re-sends jobs whose message went missing (an api killed between commit and send)
and jobs whose worker died (no heartbeat for ``lease_s``), delivery does not depend on
the broker keeping unacknowledged messages — the same guarantees hold on the embedded
filesystem transport and on Redis.

Life cycle::

    PENDING --claim--> RUNNING --> COMPLETED | FAILED | CANCELLED
       ^                  |  (transient error, retries left: PENDING again, later)
       +--- retry() ------+-- from FAILED / CANCELLED

This module imports no Celery: senders are plain callables (`Sender`), so the api and
the workers share it without importing each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import delete, select

from ballast_common import brokerfs
from ballast_common.config import AppConfig
from ballast_common.db.repository import row_dict
from ballast_common.db.uow import UnitOfWork
from ballast_common.errors import ConflictError, NotFoundError
from ballast_common.errors import ValidationError as AppValidationError
from ballast_common.fields import Timestamp
from ballast_common.models import Dataset, Job, JobResult, utcnow


class JobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL: frozenset[str] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
RETRYABLE: frozenset[str] = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})

# Queues, and the queue each task prefix is routed to (celeryconfig.task_routes).
QUEUES: tuple[str, ...] = ("default", "imports", "analysis")
MAX_PRIORITY = 9


# --------------------------------------------------------------------------- payloads


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SleepParams(_Params):
    """``demo.sleep``: sleeps in steps, reporting progress (demos, tests, benchmarks)."""

    seconds: float = Field(default=1.0, ge=0, le=3600)
    steps: int = Field(default=10, ge=1, le=10_000)
    # Raise a TransientError on the first N runs (to show retries).
    fail_times: int = Field(default=0, ge=0, le=100)
    # Fail permanently with this message.
    fail_message: str | None = Field(default=None, max_length=500)
    # False: ignore cancel requests (shows the forced termination after the grace).
    cooperative: bool = True


class DatasetImportParams(_Params):
    """``datasets.import``: parse an uploaded file into a dataset."""

    dataset_id: uuid.UUID


Statistic = Literal["mean", "median", "std"]
ComputeMode = Literal["fast", "accurate"]


class BootstrapParams(_Params):
    """``analysis.bootstrap``: bootstrap confidence intervals of columns of a dataset."""

    dataset_id: uuid.UUID
    columns: list[str] = Field(min_length=1, max_length=50)
    statistic: Statistic = "mean"
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    # None: the configured `compute` setting.
    mode: ComputeMode | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


@dataclass(frozen=True)
class TaskSpec:
    """A task users may enqueue by name."""

    name: str
    queue: str
    params: type[_Params]
    description: str
    # Soft time limit (in seconds) when the request names none.
    default_timeout: int = 1800


TASKS: Mapping[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("demo.sleep", "default", SleepParams, "Sleep with progress (demo)."),
        TaskSpec(
            "datasets.import",
            "imports",
            DatasetImportParams,
            "Parse an uploaded file into a dataset.",
        ),
        TaskSpec(
            "analysis.bootstrap",
            "analysis",
            BootstrapParams,
            "Bootstrap confidence intervals for columns of a dataset.",
        ),
    )
}

# What a user can do about a failure, by error code (shown next to the message).
SUGGESTED_ACTIONS: Mapping[str, str] = {
    "timeout": "The job ran past its time limit: use fast mode, a smaller dataset, or a longer timeout.",
    "worker_lost": "The worker running the job stopped repeatedly: retry later or contact an operator with the trace id.",
    "transient_exhausted": "A dependency stayed unavailable through every retry: retry the job later.",
    "dependency_failed": "A job this one depends on did not complete: retry that job, then this one.",
    "dataset_not_ready": "Import the dataset first (or wait for its import to finish), then retry.",
    "bad_file": "Fix the file (see the message) and upload it again.",
    "invalid_params": "Start the job again with corrected parameters.",
    "internal_error": "An unexpected error: retry; if it fails again, report the trace id.",
}


def suggested_action(code: str) -> str:
    return SUGGESTED_ACTIONS.get(code, SUGGESTED_ACTIONS["internal_error"])


# --------------------------------------------------------------------------- requests


class JobCreate(BaseModel):
    """What a client may ask for (POST /v1/jobs)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    args: list[Any] = Field(default_factory=list, max_length=50)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # 0 (lowest) .. 9 (highest).
    priority: int = Field(default=5, ge=0, le=MAX_PRIORITY)
    scheduled_at: Timestamp | None = None
    # Soft time limit (in seconds) of one run; None: the task's default.
    timeout: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    max_retries: int = Field(default=3, ge=0, le=50)
    # Base delay (in seconds) of the exponential backoff between automatic retries.
    retry_delay: float = Field(default=1.0, ge=0, le=3600)
    depends_on: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        if any(not 1 <= len(t) <= 50 for t in value):
            raise ValueError("tags must be 1 to 50 characters")
        return value


class JobView(BaseModel):
    """A job as the api returns it and the ui shows it."""

    # extra="forbid" also keeps the pydantic mypy plugin from adding **kwargs to the
    # signature, which would clash with the `kwargs` field.
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: uuid.UUID
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    scheduled_at: datetime | None
    timeout: int
    retry_count: int
    max_retries: int
    retry_delay: float
    depends_on: list[str]
    tags: list[str]
    created_by: uuid.UUID | None
    status: JobStatus
    progress: float
    progress_message: str
    result_ref: str | None
    error_code: str | None
    error_message: str | None
    error_action: str | None
    trace_id: str | None
    attempts: int
    cancel_requested: bool = False
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobView:
        view = cls.model_validate(job, from_attributes=True)
        view.cancel_requested = job.cancel_requested_at is not None
        return view


def validate_params(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The task's parameters, validated (JSON-safe).

    Raises:
        ValidationError: unknown task name or invalid parameters (422).
    """
    spec = TASKS.get(name)
    if spec is None:
        raise AppValidationError(
            f"unknown job {name!r}; known: {', '.join(sorted(TASKS))}",
            details={"fields": ["name"], "known": sorted(TASKS)},
        )
    try:
        params = spec.params.model_validate(dict(kwargs))
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "kwargs",
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        raise AppValidationError(
            f"invalid parameters for {name}: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            details={"fields": ["kwargs"], "errors": errors},
        ) from None
    return params.model_dump(mode="json", exclude_unset=False)


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class JobMessage:
    """What is sent to the broker for one job: its id, by task name, on its queue."""

    job_id: str
    name: str
    queue: str
    priority: int
    timeout: int


# Sends one message (Celery `send_task` by name in the api and the workers).
Sender = Callable[[JobMessage], None]


def message_for(job: Job) -> JobMessage:
    return JobMessage(str(job.id), job.name, job.queue, job.priority, job.timeout)


def broker_url(config: AppConfig) -> str | None:
    """The Redis broker: ``jobs.broker_url``, else ``redis_url``; None: embedded."""
    return config.jobs.broker_url or config.redis_url or None


def broker_settings(config: AppConfig) -> dict[str, Any]:
    """Celery broker settings from the configuration, shared by the api and the workers.

    Redis when ``jobs.broker_url`` (``BALLAST_JOBS__BROKER_URL``) or else ``redis_url``
    (``BALLAST_REDIS_URL``) is set; otherwise the embedded broker-free kombu filesystem
    transport under ``paths.data_dir/broker`` (no server; ~50 ms latency at a 0.05 s
    polling interval, measured on this platform).
    """
    jobs = config.jobs
    url = broker_url(config)
    if url:
        options: dict[str, Any] = {
            # Longer than the longest task (soft limit + cancel grace) so Redis never
            # hands a running task's message to a second worker; lost workers are
            # detected by their job's heartbeat instead (see module docstring).
            "visibility_timeout": 2 * jobs.soft_time_limit + 3600,
            # Priorities 0..9 become ten Redis lists; lower step = consumed first.
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "sep": ":",
            "queue_order_strategy": "priority",
        }
        return {"broker_url": url, "broker_transport_options": options}
    brokerfs.install()  # atomic message files (kombu's can be read half-written)
    root = Path(config.paths.data_dir) / "broker"
    queue_dir = root / "queue"
    control = root / "control"
    for folder in (queue_dir, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            # Producers and consumers share one folder: a message file is one message.
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control),
            # Default polling is 1 s per message; 0.05 s gives ~50 ms pickup latency.
            "polling_interval": jobs.polling_interval,
        },
    }


def broker_priority(priority: int, broker_url: str) -> int:
    """Our priority (9 = most urgent) as the broker's: Redis consumes 0 first."""
    return MAX_PRIORITY - priority if broker_url.startswith("redis") else priority


# --------------------------------------------------------------------------- api side


def is_due(job: Job, now: datetime | None = None) -> bool:
    return job.scheduled_at is None or job.scheduled_at <= (now or utcnow())


def unmet_dependencies(uow: UnitOfWork, job: Job) -> list[Job]:
    """Dependencies of `job` that are not COMPLETED (missing ones count as met: the
    enqueue check refuses unknown ids, and a deleted job cannot block others forever).
    """
    if not job.depends_on:
        return []
    ids = [uuid.UUID(str(d)) for d in job.depends_on]
    rows = uow.session.execute(select(Job).where(Job.id.in_(ids))).scalars()
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
) -> Job:
    """Add a PENDING job in this transaction; its message is sent after commit.

    Args:
        uow: the caller's transaction (the job commits with the request's other writes).
        request: what to run.
        created_by: the owner.
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
        found = dict(
            uow.session.execute(
                select(Job.id, Job.status).where(Job.id.in_(request.depends_on))
            )
            .tuples()
            .all()
        )
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


def job_dict(job: Job) -> dict[str, Any]:
    return row_dict(job)


__all__ = [
    "MAX_PRIORITY",
    "QUEUES",
    "RETRYABLE",
    "SUGGESTED_ACTIONS",
    "TASKS",
    "TERMINAL",
    "BootstrapParams",
    "DatasetImportParams",
    "JobCreate",
    "JobMessage",
    "JobStatus",
    "JobView",
    "Sender",
    "SleepParams",
    "TaskSpec",
    "broker_priority",
    "broker_settings",
    "broker_url",
    "due_at",
    "enqueue",
    "get_result",
    "is_due",
    "message_for",
    "request_cancel",
    "retry",
    "retry_backoff",
    "suggested_action",
    "transition",
    "unmet_dependencies",
    "validate_params",
]
