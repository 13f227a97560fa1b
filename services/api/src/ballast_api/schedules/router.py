"""Recurring jobs: list, add, edit (pause / resume), remove; every change audited."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from sqlalchemy import func, select

from ballast_api import policy
from ballast_api.deps import (
    CurrentPrincipal,
    DBDep,
    SettingsDep,
    WriteCtxDep,
    WriteIdDep,
)
from ballast_api.schedules import service
from ballast_api.schemas import MAX_PAGE
from ballast_api.writes import idempotent_write
from ballast_common.contracts import (
    Page,
    ScheduleCreate,
    ScheduleUpdate,
    ScheduleView,
)
from ballast_common.db import PageResult, UnitOfWork, run_tx_async
from ballast_common.fields import Timestamp
from ballast_common.jobs import schedules
from ballast_common.models import JobSchedule

router = APIRouter(prefix="/schedules", tags=["schedules"])


class ScheduleRunRead(BaseModel):
    tick: Timestamp
    job_id: uuid.UUID | None
    missed: int
    error: str | None


@router.get("", response_model=Page[ScheduleView])
async def list_schedules(
    principal: CurrentPrincipal,
    db: DBDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[ScheduleView]:
    """Recurring jobs (mine; admins: all), by name, with their next run."""
    service.authorize(principal, "read")

    def work(uow: UnitOfWork) -> Page[ScheduleView]:
        where = service.visible_to(principal)
        total = uow.session.execute(
            select(func.count()).select_from(JobSchedule).where(where)
        ).scalar_one()
        items = uow.session.execute(
            select(JobSchedule)
            .where(where)
            .order_by(JobSchedule.name)
            .offset((page - 1) * size)
            .limit(size)
        ).scalars()
        return Page[ScheduleView].of(
            PageResult(list(items), int(total), page, size),
            ScheduleView.model_validate,
        )

    return await run_tx_async(work, db=db)


@router.post(
    "", response_model=ScheduleView, status_code=201, responses=policy.RESPONSES
)
async def create_schedule(
    body: ScheduleCreate,
    principal: CurrentPrincipal,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
    config: SettingsDep,
) -> ScheduleView:
    """Add a recurring job (validated cron and time zone); idempotent per
    Idempotency-Key."""
    service.authorize(principal, "write")

    def work(uow: UnitOfWork) -> ScheduleView:
        def create() -> tuple[int, ScheduleView]:
            # On a project (named, or its task's dataset's): I must be able to change it.
            project_id = policy.project_of_schedule(
                uow, principal, body.project_id, dict(body.kwargs)
            )
            row = schedules.create(
                uow,
                name=body.name,
                task=body.task,
                kwargs=body.kwargs,
                cron=body.cron,
                timezone=body.timezone,
                enabled=body.enabled,
                timeout=body.timeout,
                project_id=project_id,
                created_by=principal.user_id,
                max_timeout=config.jobs.soft_time_limit,
            )
            return 201, ScheduleView.model_validate(row)

        _status, view = idempotent_write(
            uow,
            write_id,
            "schedules.create",
            body.model_dump(mode="json"),
            ScheduleView,
            create,
        )
        return view

    return await run_tx_async(work, db=db, ctx=ctx)


@router.get("/{schedule_id}", response_model=ScheduleView)
async def get_schedule(
    schedule_id: uuid.UUID, principal: CurrentPrincipal, db: DBDep
) -> ScheduleView:
    """One recurring job."""
    return await run_tx_async(
        lambda uow: ScheduleView.model_validate(
            service.get(uow, principal, schedule_id, "read")
        ),
        db=db,
    )


@router.get("/{schedule_id}/runs", response_model=list[ScheduleRunRead])
async def schedule_runs(
    schedule_id: uuid.UUID,
    principal: CurrentPrincipal,
    db: DBDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[ScheduleRunRead]:
    """The latest ticks of a recurring job and the jobs they started."""

    def work(uow: UnitOfWork) -> list[ScheduleRunRead]:
        service.get(uow, principal, schedule_id, "read")
        return [
            ScheduleRunRead(
                tick=r.tick, job_id=r.job_id, missed=r.missed, error=r.error
            )
            for r in schedules.recent_runs(uow, schedule_id, limit)
        ]

    return await run_tx_async(work, db=db)


@router.patch("/{schedule_id}", response_model=ScheduleView, responses=policy.RESPONSES)
async def update_schedule(
    schedule_id: uuid.UUID,
    body: ScheduleUpdate,
    principal: CurrentPrincipal,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
    config: SettingsDep,
) -> ScheduleView:
    """Edit, pause (enabled=false) or resume a recurring job; 409 on a stale version."""

    def work(uow: UnitOfWork) -> ScheduleView:
        row = service.get(uow, principal, schedule_id, "write")
        if body.kwargs is not None:
            # New parameters may name another dataset: it must be one I may change.
            policy.project_of_schedule(uow, principal, None, dict(body.kwargs))

        def change() -> tuple[int, ScheduleView]:
            changed = schedules.change(
                uow,
                row,
                cron=body.cron,
                timezone=body.timezone,
                enabled=body.enabled,
                kwargs=body.kwargs,
                timeout=body.timeout,
                expected_version=body.version,
                max_timeout=config.jobs.soft_time_limit,
            )
            return 200, ScheduleView.model_validate(changed)

        _status, view = idempotent_write(
            uow,
            write_id,
            "schedules.update",
            {"id": str(schedule_id), **body.model_dump(mode="json")},
            ScheduleView,
            change,
        )
        return view

    return await run_tx_async(work, db=db, ctx=ctx)


@router.delete("/{schedule_id}", status_code=204, responses=policy.RESPONSES)
async def delete_schedule(
    schedule_id: uuid.UUID, principal: CurrentPrincipal, db: DBDep, ctx: WriteCtxDep
) -> Response:
    """Remove a recurring job (jobs it started stay)."""

    def work(uow: UnitOfWork) -> None:
        schedules.remove(uow, service.get(uow, principal, schedule_id, "write"))

    await run_tx_async(work, db=db, ctx=ctx)
    return Response(status_code=204)
