from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from ballast_api.deps import DBDep, WriteCtxDep, WriteIdDep, require
from ballast_api.principal import Principal
from ballast_api.projects import service
from ballast_api.schemas import MAX_PAGE
from ballast_api.writes import idempotent_write
from ballast_common.contracts import Page
from ballast_common.contracts.projects import (
    ProjectCreate,
    ProjectMemberAdd,
    ProjectMemberRead,
    ProjectMemberSet,
    ProjectRead,
    ProjectUpdate,
    ProjectWriteResult,
    Status,
)
from ballast_common.db import UnitOfWork, run_tx_async
from ballast_common.fields import INT32_MAX
from ballast_common.security import Permission

router = APIRouter(prefix="/projects", tags=["projects"])
Reader = Annotated[Principal, Depends(require(Permission.PROJECTS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.PROJECTS_WRITE))]
Deleter = Annotated[Principal, Depends(require(Permission.PROJECTS_DELETE))]


@router.get("", response_model=Page[ProjectRead])
async def list_projects(
    principal: Reader,
    db: DBDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 25,
    status: Annotated[list[Status] | None, Query()] = None,
    owner_id: uuid.UUID | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Search in name and description")
    ] = None,
    order_by: Annotated[
        str | None,
        Query(
            pattern=r"^-?(name|status|priority|budget|start_date|created_at|updated_at)$"
        ),
    ] = None,
) -> Page[ProjectRead]:
    """The projects I may see (mine, shared with me, public; admins: all), paginated,
    filtered by status/owner and searched by text."""
    filters: dict[str, Any] = {}
    if status:
        filters["status"] = status
    if owner_id:
        filters["owner_id"] = owner_id

    def work(uow: UnitOfWork) -> Page[ProjectRead]:
        result, access = service.page(uow, principal, page, size, order_by, q, filters)
        return Page[ProjectRead].of(
            result, lambda p: service.read_many(principal, p, access)
        )

    return await run_tx_async(work, db=db)


@router.post("", response_model=ProjectWriteResult, status_code=201)
async def create_project(
    body: ProjectCreate,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
) -> ProjectWriteResult:
    """Create a project; idempotent per Idempotency-Key."""

    def work(uow: UnitOfWork) -> tuple[int, ProjectWriteResult]:
        return idempotent_write(
            uow,
            write_id,
            "projects.create",
            body.model_dump(mode="json"),
            ProjectWriteResult,
            lambda: (201, service.create(uow, principal, body)),
        )

    _, result = await run_tx_async(work, db=db, ctx=ctx)
    return result


@router.get("/{project_id}", response_model=ProjectRead)
async def get_project(
    project_id: uuid.UUID, principal: Reader, db: DBDep
) -> ProjectRead:
    """One project I may see (404 otherwise), with what I may do to it (`can`)."""
    return await run_tx_async(
        lambda uow: service.get(uow, principal, project_id), db=db
    )


@router.patch(
    "/{project_id}",
    response_model=ProjectWriteResult,
    responses={409: {"description": "Stale expected_version"}},
)
async def update_project(
    project_id: uuid.UUID,
    body: ProjectUpdate,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
) -> ProjectWriteResult:
    """Change fields of a project I own or edit as a member (403; 404 if I cannot see
    it; is_public only by the owner or an admin); a stale expected_version gets 409
    with both versions."""

    def work(uow: UnitOfWork) -> tuple[int, ProjectWriteResult]:
        return idempotent_write(
            uow,
            write_id,
            "projects.update",
            {"id": str(project_id), **body.model_dump(mode="json", exclude_unset=True)},
            ProjectWriteResult,
            lambda: (200, service.update(uow, principal, project_id, body)),
        )

    _, result = await run_tx_async(work, db=db, ctx=ctx)
    return result


@router.delete("/{project_id}", status_code=204)
async def delete_project(
    project_id: uuid.UUID,
    principal: Deleter,
    db: DBDep,
    ctx: WriteCtxDep,
    expected_version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
) -> Response:
    """Delete (soft) a project (its owner or an admin). Deleting twice is not an error."""
    await run_tx_async(
        lambda uow: service.delete(uow, principal, project_id, expected_version),
        db=db,
        ctx=ctx,
    )
    return Response(status_code=204)


@router.get("/{project_id}/members", response_model=list[ProjectMemberRead])
async def list_members(
    project_id: uuid.UUID, principal: Reader, db: DBDep
) -> list[ProjectMemberRead]:
    """The users a project is shared with, and their member role."""
    return await run_tx_async(
        lambda uow: service.members(uow, principal, project_id), db=db
    )


@router.post("/{project_id}/members", response_model=ProjectMemberRead)
async def add_member(
    project_id: uuid.UUID,
    body: ProjectMemberAdd,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
) -> ProjectMemberRead:
    """Share a project with the active user of this username as viewer or editor (the
    owner or an admin); audited. 422 when there is no such user."""
    return await run_tx_async(
        lambda uow: service.add_member(uow, principal, project_id, body),
        db=db,
        ctx=ctx,
    )


@router.put("/{project_id}/members/{user_id}", response_model=ProjectMemberRead)
async def set_member(
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    body: ProjectMemberSet,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
) -> ProjectMemberRead:
    """Share a project with a user as viewer or editor (the owner or an admin); audited.
    Setting the same role again changes nothing."""
    return await run_tx_async(
        lambda uow: service.set_member(uow, principal, project_id, user_id, body),
        db=db,
        ctx=ctx,
    )


@router.delete("/{project_id}/members/{user_id}", status_code=204)
async def remove_member(
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
) -> Response:
    """Stop sharing a project with a user (the owner or an admin); audited. Removing
    twice is not an error."""
    await run_tx_async(
        lambda uow: service.remove_member(uow, principal, project_id, user_id),
        db=db,
        ctx=ctx,
    )
    return Response(status_code=204)
