from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from ballast_api import policy
from ballast_api.policy import Access
from ballast_api.principal import Principal
from ballast_common.contracts import (
    ProjectCreate,
    ProjectMemberAdd,
    ProjectMemberRead,
    ProjectMemberSet,
    ProjectRead,
    ProjectUpdate,
    ProjectWriteResult,
)
from ballast_common.db import PageResult, UnitOfWork
from ballast_common.errors import PermissionDenied, ValidationError
from ballast_common.models import Project, ProjectMember, User


def _with_can(out: ProjectRead, principal: Principal, access: Access) -> ProjectRead:
    out.can = policy.capabilities(principal, access)
    return out


def create(
    uow: UnitOfWork, principal: Principal, body: ProjectCreate
) -> ProjectWriteResult:
    project = uow.repo(Project).create(**body.model_dump(), owner_id=principal.user_id)
    out = ProjectWriteResult.model_validate(project, from_attributes=True)
    _with_can(
        out,
        principal,
        policy.project_access(principal, principal.user_id, project.is_public, None),
    )
    return out


def update(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, body: ProjectUpdate
) -> ProjectWriteResult:
    access = policy.check_project(uow, principal, project_id, Access.WRITE)
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version", "force"})
    repo = uow.repo(Project)
    if "is_public" in changes and access < Access.MANAGE:
        current = repo.get(project_id)
        if bool(current.is_public) != changes["is_public"]:
            raise PermissionDenied(
                "only the owner or an admin may make a project public or private",
                details={"fields": ["is_public"], "id": str(project_id)},
            )
    result = repo.update(
        project_id,
        changes,
        expected_version=body.expected_version,
        on_conflict="overwrite" if body.force else "reject",
    )
    out = ProjectWriteResult.model_validate(result.entity, from_attributes=True)
    if result.conflict is not None:
        out.overwrote_version = result.conflict.current_version
    _with_can(out, principal, access)
    return out


def get(uow: UnitOfWork, principal: Principal, project_id: uuid.UUID) -> ProjectRead:
    access = policy.check_project(uow, principal, project_id, Access.READ)
    out = ProjectRead.model_validate(
        uow.repo(Project).get(project_id), from_attributes=True
    )
    return _with_can(out, principal, access)


def delete(
    uow: UnitOfWork,
    principal: Principal,
    project_id: uuid.UUID,
    expected_version: int | None,
) -> bool:
    if not policy.is_admin(principal):
        row = uow.session.get(Project, project_id)
        if (
            row is not None
            and row.deleted_at is not None
            and row.owner_id == principal.user_id
        ):
            return False  # deleting twice is not an error
        policy.check_project(uow, principal, project_id, Access.MANAGE)
    return uow.repo(Project).delete(project_id, expected_version=expected_version)


def page(
    uow: UnitOfWork,
    principal: Principal,
    page_no: int,
    size: int,
    order_by: str | None,
    q: str | None,
    filters: dict[str, Any],
) -> tuple[PageResult[Project], dict[uuid.UUID, Access]]:
    result = uow.repo(Project).paginate(
        page_no,
        size,
        order_by=order_by,
        search=q,
        search_fields=("name", "description"),
        where=(policy.visible_projects(principal),),
        **filters,
    )
    return result, policy.access_map(uow, principal, result.items)


def read_many(
    principal: Principal, project: Project, access: dict[uuid.UUID, Access]
) -> ProjectRead:
    out = ProjectRead.model_validate(project, from_attributes=True)
    return _with_can(out, principal, access.get(project.id, Access.NONE))


# ------------------------------------------------------------------ members


def members(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID
) -> list[ProjectMemberRead]:
    policy.check_project(uow, principal, project_id, Access.READ)
    rows = uow.session.execute(
        select(
            ProjectMember.user_id,
            User.username,
            User.display_name,
            ProjectMember.role,
            ProjectMember.created_at,
        )
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id)
        .order_by(User.username)
    ).mappings()
    return [ProjectMemberRead.model_validate(dict(r)) for r in rows]


def add_member(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, body: ProjectMemberAdd
) -> ProjectMemberRead:
    """`set_member` for the active user named `body.username` (the sharing form)."""
    policy.check_project(uow, principal, project_id, Access.MANAGE)
    user_id = uow.session.execute(
        select(User.id).where(
            User.username == body.username,
            User.deleted_at.is_(None),
            User.is_active.is_(True),
        )
    ).scalar_one_or_none()
    if user_id is None:
        raise ValidationError(
            f"no active user named {body.username!r}",
            details={"fields": ["username"]},
        )
    return set_member(
        uow, principal, project_id, user_id, ProjectMemberSet(role=body.role)
    )


def set_member(
    uow: UnitOfWork,
    principal: Principal,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    body: ProjectMemberSet,
) -> ProjectMemberRead:
    policy.check_project(uow, principal, project_id, Access.MANAGE)
    user = uow.session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise ValidationError(
            f"no user {user_id}", details={"fields": ["user_id"], "id": str(user_id)}
        )
    project = uow.repo(Project).get(project_id, for_update=True)
    if project.owner_id == user_id:
        raise ValidationError(
            "the owner already has every right on the project",
            details={"fields": ["user_id"]},
        )
    member = uow.session.get(ProjectMember, (project_id, user_id))
    old = member.role if member is not None else None
    if member is None:
        member = ProjectMember(project_id=project_id, user_id=user_id, role=body.role)
        uow.session.add(member)
    else:
        member.role = body.role
    if old != body.role:
        uow.audit(
            "member_set",
            "projects",
            str(project_id),
            old={"user_id": str(user_id), "role": old},
            new={"user_id": str(user_id), "role": body.role},
        )
    uow.session.flush()
    return ProjectMemberRead(
        user_id=user_id,
        username=user.username,
        display_name=user.display_name,
        role=body.role,
        created_at=member.created_at,
    )


def remove_member(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    policy.check_project(uow, principal, project_id, Access.MANAGE)
    uow.repo(Project).get(project_id, for_update=True)
    member = uow.session.get(ProjectMember, (project_id, user_id))
    if member is None:
        return False
    uow.audit(
        "member_removed",
        "projects",
        str(project_id),
        old={"user_id": str(user_id), "role": member.role},
        new={"user_id": str(user_id), "role": None},
    )
    uow.session.delete(member)
    uow.session.flush()
    return True
