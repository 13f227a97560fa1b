from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, Timestamps, UUIDPk

UPLOAD_STATES = ("OPEN", "COMPLETED", "ABORTED")


class Upload(UUIDPk, Timestamps, Model):
    """A browser's upload straight to the object store: an S3 multipart upload whose
    parts the browser PUTs to presigned URLs (`ballast_common.uploads`).

    The object's key is chosen by the server when the upload starts (the source key of
    the dataset it becomes, ``dataset_id`` reserved then); only its uploader (or an
    admin) may touch it. On completion the dataset row and its import job are created
    and ``state`` becomes COMPLETED; an aborted upload keeps its row (ABORTED).
    """

    __tablename__ = "uploads"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), default=None
    )
    # The dataset's id (reserved at the start: its source key names it) and name.
    dataset_id: Mapped[uuid.UUID] = mapped_column()
    name: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(500))
    # The object store's id of the multipart upload.
    s3_upload_id: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    part_size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    state: Mapped[str] = mapped_column(String(16), default="OPEN")
    job_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
