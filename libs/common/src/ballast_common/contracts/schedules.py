"""Recurring jobs (``/v1/jobs/schedules``): what a client sends and what it reads.

Cron expressions and time zones are checked by the api (`ballast_common.jobs.schedules`,
which needs croniter); these models bound sizes and refuse control characters, so a bad
value is a 422 before anything else looks at it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    if value.strip() != value or not value:
        raise ValueError("must not be empty or start or end with white space")
    return value


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable)]
Cron = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="Five cron fields (minute hour day month weekday) or an alias "
        "such as @daily, read in `timezone`.",
        examples=["0 3 * * *", "*/15 * * * 1-5", "@hourly"],
    ),
    AfterValidator(_printable),
]
TimeZone = Annotated[
    str,
    Field(min_length=1, max_length=64, description="An IANA time zone, e.g. UTC."),
    AfterValidator(_printable),
]


class ScheduleCreate(BaseModel):
    """A new recurring job."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    # Registered task name (GET /v1/jobs/tasks) and its parameters.
    task: str = Field(min_length=1, max_length=100)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    cron: Cron
    timezone: TimeZone = "UTC"
    enabled: bool = True
    # Soft time limit (in seconds) of each run; None: the task's default.
    timeout: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    project_id: uuid.UUID | None = None


class ScheduleUpdate(BaseModel):
    """Changes to a schedule (every field optional); `version` guards against a
    concurrent edit (409 when stale)."""

    model_config = ConfigDict(extra="forbid")

    cron: Cron | None = None
    timezone: TimeZone | None = None
    enabled: bool | None = None
    kwargs: dict[str, Any] | None = None
    timeout: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)


class ScheduleView(BaseModel):
    """A schedule as the api returns it and the ui shows it."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: uuid.UUID
    name: str
    task: str
    kwargs: dict[str, Any]
    cron: str
    timezone: str
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: uuid.UUID | None
    last_error: str | None
    timeout: int | None
    project_id: uuid.UUID | None
    created_by: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime
