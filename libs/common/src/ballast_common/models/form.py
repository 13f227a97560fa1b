from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, Timestamps, UUIDPk, Versioned


class Form(UUIDPk, Timestamps, Versioned, Model):
    """A saved form (save_form): shared by everyone allowed to edit it, versioned."""

    __tablename__ = "forms"

    form_id: Mapped[str] = mapped_column(String(200), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
