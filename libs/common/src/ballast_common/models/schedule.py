"""Recurring jobs: a cron schedule per row, and one row per tick that ran.

A tick runs exactly once across every scheduler (each worker's sweeper is one): the
scheduler claims it with a conditional UPDATE of `next_run_at` (and `version`), and the
tick's `job_schedule_runs` row, whose primary key is (schedule, tick), commits in the
same transaction as the job it enqueued. See `ballast_common.jobs.schedules`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, Timestamps, UUIDPk, Versioned, utcnow


class JobSchedule(UUIDPk, Timestamps, Versioned, Model):
    """A job (task name + parameters) started on every tick of a cron expression."""

    __tablename__ = "job_schedules"
    __table_args__ = (
        # The scheduler: enabled schedules by due time.
        Index("ix_job_schedules_enabled_next_run_at", "enabled", "next_run_at"),
    )

    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Registered task name (ballast_common.jobs.TASKS) and its validated parameters.
    task: Mapped[str] = mapped_column(String(100))
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Five-field cron expression or an @alias, read in `timezone` (an IANA name).
    cron: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The next tick (UTC); None while paused.
    next_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
    # Why the last tick started no job (e.g. its parameters are no longer valid).
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Soft time limit (in seconds) of each run; None: the task's default.
    timeout: Mapped[int | None] = mapped_column(default=None)
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), default=None, index=True
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )


class JobScheduleRun(Model):
    """One tick of a schedule that was handled: the primary key makes it exactly once."""

    __tablename__ = "job_schedule_runs"

    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("job_schedules.id", ondelete="CASCADE"), primary_key=True
    )
    # The tick (UTC) this run stands for.
    tick: Mapped[datetime] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
    # Later ticks that passed while no scheduler ran (downtime): coalesced into this run.
    missed: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
