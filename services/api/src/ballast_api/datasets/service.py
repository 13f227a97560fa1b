"""Datasets: upload into object storage, then a row + an import job in one transaction."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import IO, Any

from ballast_common import jobs
from ballast_common.config import AppConfig
from ballast_common.db import UnitOfWork
from ballast_common.errors import NotFoundError, ValidationError
from ballast_common.models import Dataset, Project
from ballast_common.storage import TooLargeError

EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def infer_format(fmt: str | None, filename: str) -> str:
    if fmt:
        return fmt
    ext = PurePosixPath(filename.lower()).suffix
    if ext not in EXTENSIONS:
        raise ValidationError(
            f"cannot tell the format of {filename or 'the upload'!r}: name a .csv, "
            ".xlsx, .json or .parquet file or pass ?format=",
            details={"fields": ["format"]},
        )
    return EXTENSIONS[ext]


async def spool(chunks: AsyncIterator[bytes], max_bytes: int) -> tuple[IO[bytes], int]:
    """The request body in a temporary file (memory up to 1 MiB); 413 past the limit."""
    out = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 - returned
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise TooLargeError(
                    f"the file is larger than the limit of {max_bytes / 1e6:g} MB",
                    details={"max_bytes": max_bytes},
                )
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    if size == 0:
        out.close()
        raise ValidationError("the file is empty", details={"fields": ["body"]})
    out.seek(0)
    return out, size


def source_key(dataset_id: uuid.UUID, fmt: str) -> str:
    return f"datasets/{dataset_id}/source.{fmt}"


def create_with_import(
    uow: UnitOfWork,
    *,
    dataset_id: uuid.UUID,
    name: str,
    fmt: str,
    filename: str,
    project_id: uuid.UUID | None,
    info: Any,
    user_id: uuid.UUID,
    send: jobs.Sender,
    max_timeout: int | None = None,
) -> tuple[Dataset, Any]:
    if project_id is not None and uow.repo(Project).get_by_id(project_id) is None:
        raise NotFoundError(
            f"project {project_id} not found", details={"id": str(project_id)}
        )
    dataset = uow.repo(Dataset).create(
        id=dataset_id,
        project_id=project_id,
        name=name,
        format=fmt,
        filename=filename,
        status="PENDING",
        source_key=info.key,
        size_bytes=info.size,
        sha256=info.sha256,
        created_by=user_id,
    )
    job = jobs.enqueue(
        uow,
        jobs.JobCreate(
            name="datasets.import",
            kwargs={"dataset_id": str(dataset_id)},
            tags=["import"],
            max_retries=2,
        ),
        created_by=user_id,
        send=send,
        max_timeout=max_timeout,
        project_id=project_id,
    )
    dataset.job_id = job.id
    uow.flush()
    return dataset, job


def max_upload_bytes(config: AppConfig) -> int:
    return int(config.datasets.max_upload_mb * 1024 * 1024)
