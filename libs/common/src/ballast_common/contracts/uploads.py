"""Direct uploads (``/v1/uploads``): a browser sends a file straight to the object store
in parts, to URLs the api presigns, then asks the api to complete it into a dataset.

Sizes and part numbers are bounded here (a bad value is a 422 before anything else
looks at it); the api checks them against the configured limits and the upload.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ballast_common.contracts.datasets import DatasetFormat

# S3 numbers the parts of a multipart upload 1..10,000.
MAX_PARTS = 10_000
# Part URLs asked for at once.
MAX_PART_BATCH = 100
UploadState = Literal["OPEN", "COMPLETED", "ABORTED"]


def _file_name(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    if "/" in value or "\\" in value:
        raise ValueError("must be a file name, not a path")
    if value.strip() != value or value in (".", ".."):
        raise ValueError("must not start or end with white space")
    return value


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


FileName = Annotated[
    str, Field(min_length=1, max_length=255), AfterValidator(_file_name)
]
PartNumber = Annotated[int, Field(ge=1, le=MAX_PARTS)]


class UploadCreate(BaseModel):
    """A file about to be uploaded: the api answers how to cut it into parts."""

    model_config = ConfigDict(extra="forbid")

    filename: FileName
    # Bytes; at most datasets.max_direct_upload_mb.
    size: int = Field(gt=0, le=5 * 1024**4)
    # The dataset's name (default: the file name without its extension).
    name: Annotated[
        str | None,
        Field(min_length=1, max_length=200),
        AfterValidator(lambda v: v if v is None else _printable(v)),
    ] = None
    content_type: Annotated[
        str, Field(min_length=1, max_length=200), AfterValidator(_printable)
    ] = "application/octet-stream"
    # Default: from the file name's extension.
    format: DatasetFormat | None = None
    project_id: uuid.UUID | None = None


class UploadPart(BaseModel):
    """A part the object store holds."""

    number: int
    size: int
    etag: str


class UploadRead(BaseModel):
    """An upload: how it is cut (every part `part_size` bytes, the last one the rest)
    and, when read back, the parts the object store already holds (to resume)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID | None
    dataset_id: uuid.UUID
    name: str
    filename: str
    format: str
    size: int
    part_size: int
    part_count: int
    state: UploadState
    created_at: datetime
    parts: list[UploadPart] = Field(default_factory=list)
    job_id: uuid.UUID | None = None


class UploadPartsRequest(BaseModel):
    """Ask for presigned URLs of some parts."""

    model_config = ConfigDict(extra="forbid")

    numbers: list[PartNumber] = Field(min_length=1, max_length=MAX_PART_BATCH)


class UploadPartUrl(BaseModel):
    """PUT the part's bytes (exactly `size`) to `url`; keep the answer's ETag."""

    number: int
    size: int
    url: str


class UploadPartUrls(BaseModel):
    urls: list[UploadPartUrl]
    expires_at: datetime


class CompletedPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: PartNumber
    etag: Annotated[
        str, Field(min_length=1, max_length=200), AfterValidator(_printable)
    ]


class UploadComplete(BaseModel):
    """Every part of the upload with the ETag its PUT answered, in order."""

    model_config = ConfigDict(extra="forbid")

    parts: list[CompletedPart] = Field(min_length=1, max_length=MAX_PARTS)
