from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, utcnow


class AuditLog(Model):
    """One row per effective change, written in the same transaction as the change.

    The id is monotonic: incremental backups replay audit rows in id order.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_resource", "resource_type", "resource_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    # No foreign key: the trail must outlive the user row.
    user_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    action: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(200))
    old_values: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), default=None)
    trace_id: Mapped[str | None] = mapped_column(String(32), default=None)
    ip_address: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(512), default=None)
    write_id: Mapped[str | None] = mapped_column(String(100), default=None)
