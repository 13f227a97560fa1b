from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import (
    Model,
    SoftDelete,
    Timestamps,
    UUIDPk,
    Versioned,
    utcnow,
)

PROJECT_STATUSES = ("draft", "active", "paused", "done")
# What a member may do: see the project, or also change it (and what hangs off it).
MEMBER_ROLES = ("viewer", "editor")


class Project(UUIDPk, Timestamps, SoftDelete, Versioned, Model):
    """The Workbench's example resource; its detail form uses every controlled widget."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    priority: Mapped[int] = mapped_column(default=3)
    budget: Mapped[float] = mapped_column(Numeric(14, 2, asdecimal=False), default=0.0)
    start_date: Mapped[date | None] = mapped_column(default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    is_public: Mapped[bool] = mapped_column(default=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )


class ProjectMember(Model):
    """A user a project is shared with, and how (`MEMBER_ROLES`).

    Changes are audited on the project (`projects:<id>`, actions `member_set` /
    `member_removed`), so incremental backups carry the set with its parent.
    """

    __tablename__ = "project_members"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    # The access checks look members up by user (the projects a user may see).
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
