"""Projects, the Workbench's CRUD resource."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

from ballast_common.fields import INT32_MAX, Day

Status = Literal["draft", "active", "paused", "done"]

# budget is Numeric(14, 2): twelve digits before the point, two after.
MAX_BUDGET = 999_999_999_999.99
BUDGET_DOC = (
    "Numeric(14,2): 0 to 999 999 999 999.99, stored rounded to 2 decimal places."
)
# What the caller may do to a resource, as the api decided it (ballast_api.policy):
# "read", "write" (change it and what hangs off it), "share" (members, is_public),
# "delete". The ui offers only these actions; the api enforces them regardless.
Capability = Literal["read", "write", "share", "delete"]
CAN_DOC = (
    "What the caller may do to it: read, write, share, delete "
    "(null only from an api older than this field)."
)

# Columns that are NOT NULL: PATCH may leave them out but never set them to null.
_REQUIRED = ("name", "description", "status", "priority", "budget", "tags", "is_public")


class ProjectBase(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    status: Status = "draft"
    priority: StrictInt = Field(default=3, ge=1, le=5)
    budget: float = Field(default=0.0, ge=0, le=MAX_BUDGET, description=BUDGET_DOC)
    start_date: Day | None = None
    tags: list[str] = Field(default_factory=list, max_length=50)
    is_public: StrictBool = False


class ProjectCreate(ProjectBase):
    pass


class ProjectUpdate(BaseModel):
    """All fields optional; `expected_version` enables the conflict check."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    status: Status | None = None
    priority: StrictInt | None = Field(default=None, ge=1, le=5)
    budget: float | None = Field(
        default=None, ge=0, le=MAX_BUDGET, description=BUDGET_DOC
    )
    start_date: Day | None = Field(default=None, description="null clears the date.")
    tags: list[str] | None = Field(default=None, max_length=50)
    is_public: StrictBool | None = None
    expected_version: StrictInt | None = Field(default=None, ge=1, le=INT32_MAX)
    force: StrictBool = Field(
        default=False, description="Last write wins even on a stale version."
    )

    @field_validator(*_REQUIRED)
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for fields the client sent: leaving one out is fine, null is not.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class ProjectRead(ProjectBase):
    model_config = ConfigDict(from_attributes=True)

    # What is stored, as stored: input rules (Day) are for writes.
    start_date: date | None = None
    id: uuid.UUID
    owner_id: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime
    can: list[Capability] | None = Field(default=None, description=CAN_DOC)


MemberRole = Literal["viewer", "editor"]


class ProjectMemberSet(BaseModel):
    """Share a project with a user (PUT /v1/projects/{id}/members/{user_id})."""

    model_config = ConfigDict(extra="forbid")

    role: MemberRole = "viewer"


class ProjectMemberAdd(BaseModel):
    """Share a project with a user named by username (POST /v1/projects/{id}/members)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    role: MemberRole = "viewer"


class ProjectMemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: uuid.UUID
    username: str
    display_name: str
    role: MemberRole
    created_at: datetime


class ProjectWriteResult(ProjectRead):
    # Set when a stale update was applied anyway (force): the version it overwrote.
    overwrote_version: int | None = None
