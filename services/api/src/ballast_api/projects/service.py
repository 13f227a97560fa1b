from __future__ import annotations

import uuid
from typing import Any

from ballast_common.contracts import (
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
    ProjectWriteResult,
)
from ballast_common.db import PageResult, UnitOfWork
from ballast_common.models import Project


def create(
    uow: UnitOfWork, owner: uuid.UUID, body: ProjectCreate
) -> ProjectWriteResult:
    project = uow.repo(Project).create(**body.model_dump(), owner_id=owner)
    return ProjectWriteResult.model_validate(project, from_attributes=True)


def update(
    uow: UnitOfWork, project_id: uuid.UUID, body: ProjectUpdate
) -> ProjectWriteResult:
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version", "force"})
    result = uow.repo(Project).update(
        project_id,
        changes,
        expected_version=body.expected_version,
        on_conflict="overwrite" if body.force else "reject",
    )
    out = ProjectWriteResult.model_validate(result.entity, from_attributes=True)
    if result.conflict is not None:
        out.overwrote_version = result.conflict.current_version
    return out


def get(uow: UnitOfWork, project_id: uuid.UUID) -> ProjectRead:
    return ProjectRead.model_validate(
        uow.repo(Project).get(project_id), from_attributes=True
    )


def delete(
    uow: UnitOfWork, project_id: uuid.UUID, expected_version: int | None
) -> bool:
    return uow.repo(Project).delete(project_id, expected_version=expected_version)


def page(
    uow: UnitOfWork,
    page_no: int,
    size: int,
    order_by: str | None,
    q: str | None,
    filters: dict[str, Any],
) -> PageResult[Project]:
    return uow.repo(Project).paginate(
        page_no,
        size,
        order_by=order_by,
        search=q,
        search_fields=("name", "description"),
        **filters,
    )
