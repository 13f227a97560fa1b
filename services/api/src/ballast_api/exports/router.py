"""Downloads: a dataset's data and a job's result as CSV, Parquet or Excel, streamed."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ballast_api.deps import CurrentPrincipal, DBDep, SettingsDep, require
from ballast_api.exports import service, writers
from ballast_api.jobs.service import visible
from ballast_api.principal import Principal
from ballast_common import jobs
from ballast_common.db import UnitOfWork, run_tx_async
from ballast_common.errors import ConflictError
from ballast_common.security import Permission
from ballast_common.storage import open_store

router = APIRouter(tags=["exports"])
JobsReader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
FormatQuery = Annotated[
    writers.ExportFormat, Query(description="csv, parquet or xlsx (Excel).")
]
_FILES = {
    200: {
        "description": "The file, streamed.",
        "content": {media: {} for media in writers.CONTENT_TYPES.values()},
    },
    409: {"description": "Not ready (import or job not finished)."},
    422: {"description": "Bad format, or too many rows for an Excel sheet."},
}


@router.get(
    "/datasets/{dataset_id}/export",
    response_class=StreamingResponse,
    responses=_FILES,  # type: ignore[arg-type]
)
async def export_dataset(
    dataset_id: uuid.UUID,
    principal: CurrentPrincipal,
    db: DBDep,
    config: SettingsDep,
    format: FormatQuery = "csv",
) -> StreamingResponse:
    """Download a ready dataset (streamed in batches; formula-like text neutralised in
    CSV and Excel)."""

    def work(uow: UnitOfWork) -> tuple[str, str]:
        dataset = service.readable_dataset(uow, principal, dataset_id)
        return str(dataset.data_key), dataset.name

    key, name = await run_tx_async(work, db=db)
    store = open_store(config)
    return await run_in_threadpool(service.dataset_response, store, key, format, name)


@router.get(
    "/jobs/{job_id}/result/export",
    response_class=StreamingResponse,
    responses=_FILES,  # type: ignore[arg-type]
)
async def export_job_result(
    job_id: uuid.UUID,
    principal: JobsReader,
    db: DBDep,
    format: FormatQuery = "csv",
) -> StreamingResponse:
    """Download a completed job's result (an analysis: one row per column)."""

    def work(uow: UnitOfWork) -> tuple[list[dict[str, object]], str]:
        job = visible(uow, principal, job_id)
        if job.status != jobs.JobStatus.COMPLETED:
            raise ConflictError(
                f"job {job_id} is {job.status.lower()}: only a completed job's result "
                "can be exported",
                details={"id": str(job_id), "status": job.status},
                code="job_not_completed",
            )
        rows = service.result_rows(jobs.get_result(uow, job))
        return rows, f"{job.name}-{str(job.id)[:8]}"

    rows, name = await run_tx_async(work, db=db)
    table = writers.rows_table(rows)
    return await run_in_threadpool(service.table_response, table, format, name)
