"""Background jobs: the `jobs` row is the truth, the Celery message only a wake-up call.

A job row commits (PENDING) before its message is sent; the worker claims it with a
conditional update (PENDING -> RUNNING, `attempts + 1`), and every later write of that
run is conditional on the claimed attempt, so a redelivered or stolen message can never
complete a job twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, Timestamps, UUIDPk, Versioned, utcnow


class Job(UUIDPk, Timestamps, Versioned, Model):
    """One background job (see ballast_common.jobs for the life cycle)."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The dashboard: my jobs, newest first, filtered by status.
        Index("ix_jobs_created_by_status", "created_by", "status"),
        # The sweeper: pending jobs by due time.
        Index("ix_jobs_status_scheduled_at", "status", "scheduled_at"),
    )

    # Registered task name, e.g. "datasets.import" (ballast_common.jobs.TASKS).
    name: Mapped[str] = mapped_column(String(100), index=True)
    args: Mapped[list[Any]] = mapped_column(default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    # 0 (lowest) .. 9 (highest).
    priority: Mapped[int] = mapped_column(default=5)
    # Not before this time (None: now).
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    # Soft time limit (in seconds) of one run.
    timeout: Mapped[int] = mapped_column(default=1800)
    # Automatic retries after transient errors: done so far / allowed / base delay (s).
    retry_count: Mapped[int] = mapped_column(default=0)
    max_retries: Mapped[int] = mapped_column(default=3)
    retry_delay: Mapped[float] = mapped_column(Float, default=1.0)
    # Job ids (strings) that must be COMPLETED first.
    depends_on: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    # The project the job works on (e.g. its dataset's): who may see and change the
    # job follows that project. None: the creator's own job.
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), default=None, index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="PENDING", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str] = mapped_column(String(200), default="")
    # Where the result is: "job:<id>" (a job_results row) or an object-store key.
    result_ref: Mapped[str | None] = mapped_column(String(500), default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    # What the user can do about the error.
    error_action: Mapped[str | None] = mapped_column(String(500), default=None)
    trace_id: Mapped[str | None] = mapped_column(String(32), default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # Runs started (claims); every write of a run is conditional on its attempt number.
    attempts: Mapped[int] = mapped_column(default=0)
    # Runs whose worker died (no heartbeat for the lease) since the last manual retry.
    lost_runs: Mapped[int] = mapped_column(default=0)
    # When the current message was sent (None: not yet, the sweeper sends it when due).
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    # Celery task id and worker (node name, pid) of the current run.
    task_id: Mapped[str | None] = mapped_column(String(100), default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    worker_pid: Mapped[int | None] = mapped_column(default=None)


class JobResult(Model):
    """The result of a job, keyed by job id: written once, with the COMPLETED transition."""

    __tablename__ = "job_results"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
