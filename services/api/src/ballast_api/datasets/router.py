from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from ballast_api import policy
from ballast_api.datasets import service
from ballast_api.deps import DBDep, SettingsDep, WriteCtxDep, WriteIdDep, require
from ballast_api.jobs.dispatch import SenderDep
from ballast_api.policy import Access
from ballast_api.principal import Principal
from ballast_api.schemas import MAX_PAGE
from ballast_api.writes import idempotent_write
from ballast_common.contracts import (
    DatasetDetail,
    DatasetFormat,
    DatasetImport,
    DatasetRead,
    JobView,
    Page,
)
from ballast_common.db import UnitOfWork, run_tx_async
from ballast_common.models import Dataset
from ballast_common.security import Permission
from ballast_common.storage import open_store

router = APIRouter(prefix="/datasets", tags=["datasets"])
Reader = Annotated[Principal, Depends(require(Permission.DATASETS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.DATASETS_WRITE))]


@router.post(
    "",
    response_model=DatasetImport,
    status_code=202,
    responses={
        413: {"description": "The file is larger than datasets.max_upload_mb"},
        **policy.RESPONSES,
    },
)
async def import_dataset(
    request: Request,
    principal: Writer,
    db: DBDep,
    config: SettingsDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
    send: SenderDep,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    format: Annotated[DatasetFormat | None, Query()] = None,
    project_id: uuid.UUID | None = None,
    filename: Annotated[
        str, Header(alias="X-Filename", max_length=255, description="The file's name.")
    ] = "",
) -> DatasetImport:
    """Upload a file (the raw request body) and import it as a dataset in a job, into a
    project I may change (404 if I cannot see it, 403 if I may only read it);
    idempotent per Idempotency-Key."""
    fmt = service.infer_format(format, filename)
    if project_id is not None:
        # Before the upload is stored: a refused import costs no object.
        await run_tx_async(
            lambda uow: policy.check_project(uow, principal, project_id, Access.WRITE),
            db=db,
        )
    body, _size = await service.spool(
        request.stream(), service.max_upload_bytes(config)
    )
    dataset_id = uuid.uuid4()
    store = open_store(config)
    key = service.source_key(dataset_id, fmt)
    try:
        with body:
            info = await run_in_threadpool(store.put, key, body)
    except BaseException:
        await run_in_threadpool(store.delete, key)
        raise

    # The payload identifies the upload: a replay with another file is refused, the
    # same file again answers the first import.
    payload = {
        "name": name,
        "format": fmt,
        "filename": filename,
        "project_id": str(project_id) if project_id else None,
        "sha256": info.sha256,
        "size": info.size,
    }
    created: list[uuid.UUID] = []

    def work(uow: UnitOfWork) -> DatasetImport:
        created.clear()

        def create() -> tuple[int, DatasetImport]:
            if project_id is not None:
                # Again in the write's transaction: sharing may have changed meanwhile.
                policy.check_project(uow, principal, project_id, Access.WRITE)
            dataset, job = service.create_with_import(
                uow,
                dataset_id=dataset_id,
                name=name,
                fmt=fmt,
                filename=filename,
                project_id=project_id,
                info=info,
                user_id=principal.user_id,
                send=send,
                max_timeout=config.jobs.soft_time_limit,
            )
            created.append(dataset.id)
            read = DatasetRead.model_validate(dataset, from_attributes=True)
            read.can = policy.capabilities(
                principal, policy.access_to_dataset(uow, principal, dataset)
            )
            return 202, DatasetImport(
                dataset=read,
                job=JobView.of(job),
            )

        _status, result = idempotent_write(
            uow, write_id, "datasets.import", payload, DatasetImport, create
        )
        return result

    try:
        result = await run_tx_async(work, db=db, ctx=ctx)
    except BaseException:
        # No row refers to the upload: remove it (nothing half-imported).
        await run_in_threadpool(store.delete, key)
        raise
    if not created:
        # A replay: the first request's dataset holds the file; this copy is not needed.
        await run_in_threadpool(store.delete, key)
    await send.settle()
    return result


@router.get("", response_model=Page[DatasetRead])
async def list_datasets(
    principal: Reader,
    db: DBDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 25,
    project_id: uuid.UUID | None = None,
    status: Annotated[list[str] | None, Query()] = None,
) -> Page[DatasetRead]:
    """The datasets I may see (those of projects I may see, and my own without a
    project; admins: all), newest first."""
    filters: dict[str, Any] = {}
    if project_id:
        filters["project_id"] = project_id
    if status:
        filters["status"] = status

    def work(uow: UnitOfWork) -> Page[DatasetRead]:
        result = uow.repo(Dataset).paginate(
            page, size, where=(policy.visible_datasets(principal),), **filters
        )
        projects = {d.project_id for d in result.items if d.project_id is not None}
        access = {
            pid: policy.access_to_project(uow, principal, pid) for pid in projects
        }

        def read(d: Dataset) -> DatasetRead:
            out = DatasetRead.model_validate(d, from_attributes=True)
            level = (
                access[d.project_id]
                if d.project_id is not None
                else policy.access_to_dataset(uow, principal, d)
            )
            out.can = policy.capabilities(principal, level)
            return out

        return Page[DatasetRead].of(result, read)

    return await run_tx_async(work, db=db)


@router.get("/{dataset_id}", response_model=DatasetDetail)
async def get_dataset(
    dataset_id: uuid.UUID, principal: Reader, db: DBDep
) -> DatasetDetail:
    """One dataset I may see (404 otherwise) with its preview rows."""

    def work(uow: UnitOfWork) -> DatasetDetail:
        dataset, access = policy.check_dataset(uow, principal, dataset_id, Access.READ)
        out = DatasetDetail.model_validate(dataset, from_attributes=True)
        out.can = policy.capabilities(principal, access)
        return out

    return await run_tx_async(work, db=db)
