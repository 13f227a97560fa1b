from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, utcnow


class WriteRecord(Model):
    """Idempotency: the outcome of a client-supplied write id, stored with the write.

    A replay of the same write id returns `response` and changes nothing. `fingerprint`
    guards against a client reusing an id for a different request.
    """

    __tablename__ = "write_ids"

    write_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    operation: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(default=200)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
