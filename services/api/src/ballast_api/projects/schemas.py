from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["draft", "active", "paused", "done"]


class ProjectBase(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    status: Status = "draft"
    priority: int = Field(default=3, ge=1, le=5)
    budget: float = Field(default=0.0, ge=0, le=1e12)
    start_date: date | None = None
    tags: list[str] = Field(default_factory=list, max_length=50)
    is_public: bool = False


class ProjectCreate(ProjectBase):
    pass


class ProjectUpdate(BaseModel):
    """All fields optional; `expected_version` enables the conflict check."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    status: Status | None = None
    priority: int | None = Field(default=None, ge=1, le=5)
    budget: float | None = Field(default=None, ge=0, le=1e12)
    start_date: date | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    is_public: bool | None = None
    expected_version: int | None = Field(default=None, ge=1)
    force: bool = Field(
        default=False, description="Last write wins even on a stale version."
    )


class ProjectRead(ProjectBase):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime


class ProjectWriteResult(ProjectRead):
    # Set when a stale update was applied anyway (force): the version it overwrote.
    overwrote_version: int | None = None
