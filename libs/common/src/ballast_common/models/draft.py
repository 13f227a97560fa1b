from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import JSONType, Model, UUIDPk, utcnow


class Draft(UUIDPk, Model):
    """One widget value of one user's form, written by the ui's outbox (persist_input)."""

    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("user_id", "form_id", "field"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE")
    )
    form_id: Mapped[str] = mapped_column(String(200), index=True)
    field: Mapped[str] = mapped_column(String(200))
    # Any JSON value.
    value: Mapped[Any] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(default=1)
    # The client's per-key sequence: a write older than the stored one is ignored.
    client_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
