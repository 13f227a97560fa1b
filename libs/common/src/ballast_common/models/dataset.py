from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, SoftDelete, Timestamps, UUIDPk, Versioned

DATASET_STATUSES = ("PENDING", "IMPORTING", "READY", "FAILED", "CANCELLED")


class Dataset(UUIDPk, Timestamps, SoftDelete, Versioned, Model):
    """An imported table: the upload and the parsed data (Parquet) live in object storage.

    A dataset is READY only after its data object is completely written; a failed import
    leaves status FAILED, an error, and no data object.
    """

    __tablename__ = "datasets"

    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), default=None, index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # csv / excel / json / parquet
    format: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="PENDING", index=True)
    # Object-store keys of the upload and of the parsed table.
    source_key: Mapped[str] = mapped_column(String(500))
    data_key: Mapped[str | None] = mapped_column(String(500), default=None)
    size_bytes: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), default=0
    )
    sha256: Mapped[str] = mapped_column(String(64), default="")
    row_count: Mapped[int | None] = mapped_column(default=None)
    # [{"name": ..., "dtype": ...}, ...]
    columns: Mapped[list[Any]] = mapped_column(default=list)
    # The first rows, JSON-safe, for the preview table.
    preview: Mapped[list[Any]] = mapped_column(default=list)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
