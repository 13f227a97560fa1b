"""Datasets: uploaded files imported by a job, with their columns and a preview."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ballast_common.contracts.jobs import JobView
from ballast_common.contracts.projects import CAN_DOC, Capability

DatasetFormat = Literal["csv", "excel", "json", "parquet"]


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID | None
    name: str
    format: str
    filename: str
    status: str
    size_bytes: int
    sha256: str
    row_count: int | None
    # ``[{"name": ..., "dtype": ...}]``
    columns: list[dict[str, Any]]
    error_code: str | None
    error_message: str | None
    job_id: uuid.UUID | None
    created_by: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime
    # A dataset follows its project (without one: its creator's).
    can: list[Capability] | None = Field(default=None, description=CAN_DOC)


class DatasetDetail(DatasetRead):
    # The first rows (datasets.preview_rows), for the preview table.
    preview: list[dict[str, Any]]


class DatasetImport(BaseModel):
    """The new dataset and the job importing it (poll the job for progress)."""

    dataset: DatasetRead
    job: JobView
