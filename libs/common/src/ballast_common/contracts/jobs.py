"""Background jobs as a client sees them: statuses, the request, the view, results."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ballast_common.contracts.projects import Capability
from ballast_common.fields import Timestamp


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


class JobRow(Protocol):
    """What `JobView.of` reads beyond the view's own fields (the `jobs` row has it)."""

    @property
    def cancel_requested_at(self) -> datetime | None: ...


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
    can: list[Capability] | None = Field(
        default=None,
        description="What the caller may do to it: read; write (cancel, retry). "
        "Null in the answer of a cancel, retry or start.",
    )

    @classmethod
    def of(cls, job: JobRow, can: list[Capability] | None = None) -> JobView:
        """The view of a `jobs` row (read by attribute)."""
        view = cls.model_validate(job, from_attributes=True)
        view.cancel_requested = job.cancel_requested_at is not None
        view.can = can
        return view

    @property
    def params(self) -> dict[str, Any]:
        """The task's parameters (``kwargs``), under the name the UI's pages use."""
        return self.kwargs

    @property
    def finished(self) -> bool:
        """COMPLETED, FAILED or CANCELLED: nothing will change any more."""
        return self.status in TERMINAL

    @property
    def retryable(self) -> bool:
        """FAILED or CANCELLED: `POST /v1/jobs/{id}/retry` runs it again."""
        return self.status in RETRYABLE


class JobResultRead(BaseModel):
    job_id: str
    data: dict[str, Any]


class TaskInfo(BaseModel):
    name: str
    queue: str
    description: str
    params_schema: dict[str, Any]
