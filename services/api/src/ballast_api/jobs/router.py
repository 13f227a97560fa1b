from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ballast_api import policy
from ballast_api.deps import DBDep, SettingsDep, WriteCtxDep, WriteIdDep, require
from ballast_api.jobs import service
from ballast_api.jobs.dispatch import SenderDep
from ballast_api.policy import RESPONSES, Access, project_of_job_params
from ballast_api.principal import Principal
from ballast_api.schemas import MAX_PAGE
from ballast_api.writes import idempotent_write
from ballast_common import jobs
from ballast_common.contracts import (
    JobCreate,
    JobResultRead,
    JobStatus,
    JobView,
    Page,
    TaskInfo,
)
from ballast_common.db import PageResult, UnitOfWork, run_tx_async
from ballast_common.fields import Flag, Timestamp
from ballast_common.models import Job
from ballast_common.security import Permission

router = APIRouter(prefix="/jobs", tags=["jobs"])
Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.JOBS_WRITE))]


@router.get("/tasks", response_model=list[TaskInfo])
async def list_tasks(_principal: Reader) -> list[TaskInfo]:
    """The jobs that can be started, with the JSON schema of their parameters."""
    return [
        TaskInfo(
            name=spec.name,
            queue=spec.queue,
            description=spec.description,
            params_schema=spec.params.model_json_schema(),
        )
        for spec in jobs.TASKS.values()
    ]


@router.post("", response_model=JobView, status_code=201, responses=RESPONSES)
async def enqueue_job(
    body: JobCreate,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
    send: SenderDep,
    config: SettingsDep,
) -> JobView:
    """Start a job: the row commits (PENDING) before its message is sent; idempotent
    per Idempotency-Key. A job on a dataset (or project) needs write access to its
    project (404 if I cannot see it, 403 if I may only read it)."""
    params = jobs.validate_params(body.name, body.kwargs)

    def work(uow: UnitOfWork) -> JobView:
        project_id = project_of_job_params(uow, principal, dict(params))
        return _write(
            uow,
            write_id,
            "jobs.create",
            body.model_dump(mode="json"),
            lambda: jobs.enqueue(
                uow,
                body,
                created_by=principal.user_id,
                send=send,
                params=params,
                max_timeout=config.jobs.soft_time_limit,
                project_id=project_id,
            ),
            status=201,
        )

    job = await run_tx_async(work, db=db, ctx=ctx)
    await send.settle()
    return job


def _write(
    uow: UnitOfWork,
    write_id: str | None,
    operation: str,
    payload: dict[str, Any],
    change: Callable[[], Job],
    status: int = 202,
) -> JobView:
    """Run `change` once per write id (a replay answers what the first call did)."""
    _status, job = idempotent_write(
        uow,
        write_id,
        operation,
        payload,
        JobView,
        lambda: (status, JobView.of(change())),
    )
    return job


@router.get("", response_model=Page[JobView])
async def list_jobs(
    principal: Reader,
    db: DBDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 25,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    name: Annotated[str | None, Query(max_length=100)] = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    created_by: Annotated[
        uuid.UUID | None, Query(description="Admins: one user's jobs.")
    ] = None,
    mine: Annotated[
        Flag, Query(description="Admins: only my own jobs (others always get theirs).")
    ] = False,
    finished_since: Annotated[
        Timestamp | None,
        Query(description="Only jobs finished after this time (for notifications)."),
    ] = None,
) -> Page[JobView]:
    """The jobs I may see (mine and those of projects I may see; admins: all), newest
    first, filtered."""

    def work(uow: UnitOfWork) -> Page[JobView]:
        items, total = service.page(
            uow,
            principal,
            page_no=page,
            size=size,
            statuses=[str(s) for s in status] if status else None,
            name=name,
            tag=tag,
            created_by=created_by,
            mine=mine,
            finished_since=finished_since,
        )
        access = policy.job_access_map(uow, principal, items)
        return Page[JobView].of(
            PageResult(items, total, page, size),
            lambda job: JobView.of(
                job, policy.job_capabilities(principal, access[job.id])
            ),
        )

    return await run_tx_async(work, db=db)


@router.get("/summary", response_model=dict[str, int])
async def jobs_summary(
    principal: Reader, db: DBDep, mine: Flag = False
) -> dict[str, int]:
    """How many of the jobs I may see (admins: all; `mine`: my own) are in each status."""
    return await run_tx_async(lambda uow: service.summary(uow, principal, mine), db=db)


@router.get("/{job_id}", response_model=JobView)
async def get_job(job_id: uuid.UUID, principal: Reader, db: DBDep) -> JobView:
    """One job: status, progress, error with trace id and suggested action."""

    def work(uow: UnitOfWork) -> JobView:
        job, access = service.visible_with_access(uow, principal, job_id)
        return JobView.of(job, policy.job_capabilities(principal, access))

    return await run_tx_async(work, db=db)


@router.get("/{job_id}/result", response_model=JobResultRead)
async def get_job_result(
    job_id: uuid.UUID, principal: Reader, db: DBDep
) -> JobResultRead:
    """The result of a completed job."""

    def work(uow: UnitOfWork) -> JobResultRead:
        job = service.visible(uow, principal, job_id)
        return JobResultRead(job_id=str(job.id), data=jobs.get_result(uow, job))

    return await run_tx_async(work, db=db)


@router.post("/{job_id}/cancel", response_model=JobView, status_code=202)
async def cancel_job(
    job_id: uuid.UUID,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
) -> JobView:
    """Cancel: at once if pending; a running job stops cooperatively or is terminated
    after the grace period. Idempotent per Idempotency-Key."""

    def work(uow: UnitOfWork) -> JobView:
        job = service.visible(uow, principal, job_id, Access.WRITE)
        return _write(
            uow,
            write_id,
            "jobs.cancel",
            {"job_id": str(job_id)},
            lambda: jobs.request_cancel(uow, job),
        )

    return await run_tx_async(work, db=db, ctx=ctx)


@router.post("/{job_id}/retry", response_model=JobView, status_code=202)
async def retry_job(
    job_id: uuid.UUID,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
    send: SenderDep,
) -> JobView:
    """Run a failed or cancelled job again; idempotent per Idempotency-Key (a repeated
    request answers the first one's outcome instead of starting a second run)."""

    def work(uow: UnitOfWork) -> JobView:
        job = service.visible(uow, principal, job_id, Access.WRITE)
        return _write(
            uow,
            write_id,
            "jobs.retry",
            {"job_id": str(job_id)},
            lambda: jobs.retry(uow, job, send=send),
        )

    result = await run_tx_async(work, db=db, ctx=ctx)
    await send.settle()
    return result
