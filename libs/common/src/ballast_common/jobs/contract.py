"""The job contract shared by the api, the workers and the ui: statuses, requests,
views and the message that wakes a worker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ballast_common.db.repository import row_dict
from ballast_common.fields import Timestamp
from ballast_common.models import Job


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


def job_dict(job: Job) -> dict[str, Any]:
    return row_dict(job)
