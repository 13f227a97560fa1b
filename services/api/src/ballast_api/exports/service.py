"""Exports: which dataset or job result the caller may download, and the response.

`readable_dataset` is the one access decision for dataset exports (project-level
authorization replaces it in one place); job results follow the jobs' own rule
(`ballast_api.jobs.service.visible`: the owner or an admin).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.responses import StreamingResponse

from ballast_api import policy
from ballast_api.exports import writers
from ballast_api.policy import Access
from ballast_api.principal import Principal
from ballast_common.db import UnitOfWork
from ballast_common.errors import (
    ConflictError,
    PermissionDenied,
    ValidationError,
)
from ballast_common.models import Dataset
from ballast_common.security import Permission
from ballast_common.storage import ObjectStore


def readable_dataset(
    uow: UnitOfWork, principal: Principal, dataset_id: uuid.UUID
) -> Dataset:
    """The dataset if `principal` may read its data.

    Raises:
        PermissionDenied: the role may not read datasets (403).
        NotFoundError: no such (live) dataset, or one the caller may not see (404).
        ConflictError: its import has not finished (409).
    """
    if not principal.can(Permission.DATASETS_READ):
        raise PermissionDenied(
            f"permission {Permission.DATASETS_READ} required",
            details={
                "permission": str(Permission.DATASETS_READ),
                "roles": list(principal.roles),
            },
        )
    # Follows its project (ballast_api.policy): 404 for one the caller may not see.
    dataset, _access = policy.check_dataset(uow, principal, dataset_id, Access.READ)
    if dataset.status != "READY" or not dataset.data_key:
        raise ConflictError(
            f"dataset {dataset_id} is {dataset.status.lower()}: only a ready dataset "
            "can be exported",
            details={"id": str(dataset_id), "status": dataset.status},
            code="dataset_not_ready",
        )
    return dataset


@contextlib.contextmanager
def _seekable(store: ObjectStore, key: str) -> Iterator[IO[bytes]]:
    """The object as a seekable file: itself (local store) or a temporary copy on disk
    (S3 streams are not seekable; Parquet's footer is at the end)."""
    fh = store.open(key)
    try:
        if fh.seekable():
            yield fh
            return
        with tempfile.TemporaryFile() as tmp:
            shutil.copyfileobj(fh, tmp, writers.CHUNK)
            tmp.seek(0)
            yield tmp
    finally:
        fh.close()


def _stream(
    chunks: Iterator[bytes], media: str, name: str, ext: str
) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type=media,
        headers={
            "Content-Disposition": writers.content_disposition(name, ext),
            "Cache-Control": "no-store",
        },
    )


def dataset_response(
    store: ObjectStore, key: str, fmt: str, name: str
) -> StreamingResponse:
    """Open the stored Parquet and answer it as `fmt` (runs in a worker thread).

    Problems found before the first byte (a missing object, a table too large for Excel)
    raise here and become an error response; nothing is sent half.
    """
    if fmt == "parquet":
        fh = store.open(key)
        return _stream(writers.file_chunks(fh), writers.CONTENT_TYPES[fmt], name, fmt)
    stack = contextlib.ExitStack()
    try:
        source = stack.enter_context(_seekable(store, key))
        schema, rows, batches = writers.parquet_batches(source)
        if fmt == "xlsx":
            problem = writers.check_excel_size(rows, len(schema))
            if problem:
                raise ValidationError(problem, details={"fields": ["format"]})
            book = writers.xlsx_file(schema, batches)
            stack.close()
            return _stream(
                writers.file_chunks(book), writers.CONTENT_TYPES[fmt], name, fmt
            )
        return _stream(
            _closing(writers.csv_chunks(schema, batches), stack),
            writers.CONTENT_TYPES[fmt],
            name,
            fmt,
        )
    except BaseException:
        stack.close()
        raise


def _closing(chunks: Iterator[bytes], stack: contextlib.ExitStack) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        stack.close()


def table_response(table: pa.Table, fmt: str, name: str) -> StreamingResponse:
    """A small in-memory table (a job's result) as `fmt`."""
    batches = table.to_batches(max_chunksize=writers.BATCH_ROWS)
    if fmt == "parquet":
        sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed by file_chunks
        pq.write_table(table, sink)
        sink.seek(0)
        chunks: Iterator[bytes] = writers.file_chunks(sink)
    elif fmt == "xlsx":
        problem = writers.check_excel_size(table.num_rows, table.num_columns)
        if problem:
            raise ValidationError(problem, details={"fields": ["format"]})
        chunks = writers.file_chunks(writers.xlsx_file(table.schema, batches))
    else:
        chunks = writers.csv_chunks(table.schema, batches)
    return _stream(chunks, writers.CONTENT_TYPES[fmt], name, fmt)


def result_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A job result as table rows: one per entry of a ``columns`` mapping (an analysis:
    one row per analysed column), else the result as one row."""
    columns = data.get("columns")
    common = {k: v for k, v in data.items() if k != "columns"}
    if isinstance(columns, dict) and all(isinstance(v, dict) for v in columns.values()):
        return [
            {"column": name, **values, **common} for name, values in columns.items()
        ]
    return [dict(data)]
