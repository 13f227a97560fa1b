"""Resource-level authorization: the one place that decides who may do what to which
project, and to everything that hangs off a project (datasets, jobs, schedules, the
project's forms).

Role permissions (`ballast_common.security`) say which actions a caller may attempt at
all (`require(...)` on each route); this module says on which resources:

- admins (`projects:admin`) see and change every project;
- the owner sees it and, with a writing role, changes, shares and deletes it;
- a member sees it; a member with the `editor` member role and a writing role changes it;
- anyone signed in sees a public project (`is_public`);
- nobody else learns that it exists (404). Visible but not writable answers 403.

A dataset, job or schedule with a project follows the project; one without a project
belongs to its creator (my own job or schedule stays visible to me). Lists are filtered in SQL (`visible_*` clauses), never after fetching.
"""

from __future__ import annotations

import re
import uuid
from enum import IntEnum

from sqlalchemy import ColumnElement, Select, and_, or_, select, true

from ballast_api.principal import Principal
from ballast_common.contracts import Capability
from ballast_common.db import UnitOfWork
from ballast_common.errors import NotFoundError, PermissionDenied
from ballast_common.models import Dataset, Job, JobSchedule, Project, ProjectMember
from ballast_common.security import Permission

# For routes that name a project or dataset in the query or body (not the path): what
# the OpenAPI document declares for a resource the caller may not see or not change.
RESPONSES: dict[int | str, dict[str, object]] = {
    403: {"description": "The named project or dataset may be read, not changed"},
    404: {"description": "The named project or dataset does not exist for the caller"},
}


class Access(IntEnum):
    """What a caller may do to one project (each level includes the ones below)."""

    NONE = 0  # invisible: 404
    READ = 1  # see it and what hangs off it
    WRITE = 2  # change it, import datasets into it, run and cancel its jobs
    MANAGE = 3  # share it (members, is_public) and, with projects:delete, delete it


# Form ids of a project's saved forms (the ui's detail form and its extras).
_PROJECT_FORM = re.compile(
    r"^project(?:-extras)?\.(?P<id>[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12})$"
)


def is_admin(principal: Principal) -> bool:
    return principal.can(Permission.PROJECTS_ADMIN)


def project_access(
    principal: Principal,
    owner_id: uuid.UUID | None,
    is_public: bool,
    member_role: str | None,
) -> Access:
    """The caller's access to a (live) project, from its owner, visibility and the
    caller's member role on it (None: not a member)."""
    if is_admin(principal):
        return Access.MANAGE
    writer = principal.can(Permission.PROJECTS_WRITE)
    if owner_id is not None and owner_id == principal.user_id:
        return Access.MANAGE if writer else Access.READ
    if member_role == "editor":
        return Access.WRITE if writer else Access.READ
    if member_role is not None or is_public:
        return Access.READ
    return Access.NONE


def capabilities(principal: Principal, access: Access) -> list[Capability]:
    """What the ui may offer on a resource the caller has `access` to."""
    can: list[Capability] = []
    if access >= Access.READ:
        can.append("read")
    if access >= Access.WRITE:
        can.append("write")
    if access >= Access.MANAGE:
        can.append("share")
        if principal.can(Permission.PROJECTS_DELETE):
            can.append("delete")
    return can


def _member_of(principal: Principal) -> Select[tuple[uuid.UUID]]:
    return select(ProjectMember.project_id).where(
        ProjectMember.user_id == principal.user_id
    )


def visible_projects(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on `Project`: the projects the caller may see."""
    if is_admin(principal):
        return true()
    return or_(
        Project.owner_id == principal.user_id,
        Project.is_public.is_(True),
        Project.id.in_(_member_of(principal)),
    )


def visible_project_ids(principal: Principal) -> Select[tuple[uuid.UUID]]:
    """The ids of the live projects the caller may see (a subquery)."""
    return select(Project.id).where(
        Project.deleted_at.is_(None), visible_projects(principal)
    )


def _deny(
    kind: str, resource_id: uuid.UUID | str, access: Access, need: Access
) -> None:
    if access == Access.NONE:
        raise NotFoundError(
            f"{kind} {resource_id} not found",
            details={"resource_type": kind, "id": str(resource_id)},
        )
    if access < need:
        raise PermissionDenied(
            f"you may not {need.name.lower()} {kind} {resource_id}",
            details={
                "resource_type": kind,
                "id": str(resource_id),
                "access": access.name.lower(),
                "required": need.name.lower(),
            },
        )


def access_to_project(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID
) -> Access:
    """The caller's access to a project (NONE for an unknown or deleted one)."""
    row = uow.session.execute(
        select(Project.owner_id, Project.is_public, ProjectMember.role)
        .outerjoin(
            ProjectMember,
            and_(
                ProjectMember.project_id == Project.id,
                ProjectMember.user_id == principal.user_id,
            ),
        )
        .where(Project.id == project_id, Project.deleted_at.is_(None))
    ).first()
    if row is None:
        return Access.NONE
    return project_access(principal, row.owner_id, bool(row.is_public), row.role)


def check_project(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, need: Access
) -> Access:
    """The caller's access to a project if at least `need`; else 404 (invisible) or 403."""
    access = access_to_project(uow, principal, project_id)
    _deny("projects", project_id, access, need)
    return access


def access_map(
    uow: UnitOfWork, principal: Principal, projects: list[Project]
) -> dict[uuid.UUID, Access]:
    """The caller's access to each of `projects` (one query for the member roles)."""
    ids = [p.id for p in projects]
    roles: dict[uuid.UUID, str] = {}
    if ids and not is_admin(principal):
        rows = uow.session.execute(
            select(ProjectMember.project_id, ProjectMember.role).where(
                ProjectMember.user_id == principal.user_id,
                ProjectMember.project_id.in_(ids),
            )
        )
        roles = {row.project_id: row.role for row in rows}
    return {
        p.id: project_access(principal, p.owner_id, bool(p.is_public), roles.get(p.id))
        for p in projects
    }


# ------------------------------------------------------------------ datasets


def visible_datasets(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on `Dataset`: those of visible projects, and my own unfiled ones."""
    if is_admin(principal):
        return true()
    return or_(
        and_(Dataset.project_id.is_(None), Dataset.created_by == principal.user_id),
        Dataset.project_id.in_(visible_project_ids(principal)),
    )


def access_to_dataset(
    uow: UnitOfWork, principal: Principal, dataset: Dataset
) -> Access:
    if dataset.project_id is not None:
        return access_to_project(uow, principal, dataset.project_id)
    if is_admin(principal):
        return Access.MANAGE
    if dataset.created_by is not None and dataset.created_by == principal.user_id:
        return Access.WRITE if principal.can(Permission.DATASETS_WRITE) else Access.READ
    return Access.NONE


def check_dataset(
    uow: UnitOfWork, principal: Principal, dataset_id: uuid.UUID, need: Access
) -> tuple[Dataset, Access]:
    """The live dataset and the caller's access if at least `need`; else 404 or 403."""
    dataset = uow.session.get(Dataset, dataset_id)
    if dataset is None or dataset.deleted_at is not None:
        _deny("datasets", dataset_id, Access.NONE, need)
        raise AssertionError("unreachable")  # pragma: no cover
    access = access_to_dataset(uow, principal, dataset)
    _deny("datasets", dataset_id, access, need)
    return dataset, access


# ---------------------------------------------------------------------- jobs


def jobs_admin(principal: Principal) -> bool:
    return principal.can(Permission.JOBS_ADMIN)


def visible_jobs(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on `Job`: my own and those of the projects I may see."""
    if jobs_admin(principal):
        return true()
    return or_(
        Job.created_by == principal.user_id,
        and_(
            Job.project_id.is_not(None),
            Job.project_id.in_(visible_project_ids(principal)),
        ),
    )


def job_access_map(
    uow: UnitOfWork, principal: Principal, jobs: list[Job]
) -> dict[uuid.UUID, Access]:
    """The caller's access to each of `jobs` (one query for their live projects)."""
    if jobs_admin(principal):
        return {job.id: Access.MANAGE for job in jobs}
    ids = {job.project_id for job in jobs if job.project_id is not None}
    projects = (
        list(
            uow.session.execute(
                select(Project).where(Project.id.in_(ids), Project.deleted_at.is_(None))
            ).scalars()
        )
        if ids
        else []
    )
    by_project = access_map(uow, principal, projects)
    own = Access.WRITE if principal.can(Permission.JOBS_WRITE) else Access.READ
    found: dict[uuid.UUID, Access] = {}
    for job in jobs:
        mine = job.created_by is not None and job.created_by == principal.user_id
        if job.project_id is None:
            found[job.id] = own if mine else Access.NONE
            continue
        access = by_project.get(job.project_id, Access.NONE)
        # My own job stays visible to me even if its project no longer is.
        found[job.id] = max(access, Access.READ) if mine else access
    return found


def access_to_job(uow: UnitOfWork, principal: Principal, job: Job) -> Access:
    return job_access_map(uow, principal, [job])[job.id]


def job_capabilities(principal: Principal, access: Access) -> list[Capability]:
    """What the ui may offer on a job: read; write (cancel, retry) with jobs:write."""
    can: list[Capability] = ["read"] if access >= Access.READ else []
    if access >= Access.WRITE and principal.can(Permission.JOBS_WRITE):
        can.append("write")
    return can


def check_job(
    uow: UnitOfWork,
    principal: Principal,
    job: Job | None,
    job_id: uuid.UUID,
    need: Access,
) -> tuple[Job, Access]:
    """The job and the caller's access to it, if at least `need`; else 404 or 403."""
    if job is None:
        _deny("jobs", job_id, Access.NONE, need)
        raise AssertionError("unreachable")  # pragma: no cover
    access = access_to_job(uow, principal, job)
    _deny("jobs", job_id, access, need)
    return job, access


def project_of_job_params(
    uow: UnitOfWork, principal: Principal, kwargs: dict[str, object]
) -> uuid.UUID | None:
    """The project a new job works on, checked for WRITE (its dataset's, or the one it
    names); None for a job on nothing of a project."""
    raw_dataset = kwargs.get("dataset_id")
    if raw_dataset is not None:
        dataset_id = _uuid(raw_dataset)
        if dataset_id is None:
            return None  # the task's parameter validation rejects it
        dataset, _ = check_dataset(uow, principal, dataset_id, Access.WRITE)
        return dataset.project_id
    raw_project = kwargs.get("project_id")
    if raw_project is not None:
        project_id = _uuid(raw_project)
        if project_id is not None:
            check_project(uow, principal, project_id, Access.WRITE)
            return project_id
    return None


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# ----------------------------------------------------------------- schedules


def visible_schedules(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on `JobSchedule`: my own and those of the projects I may see."""
    if jobs_admin(principal):
        return true()
    return or_(
        JobSchedule.created_by == principal.user_id,
        and_(
            JobSchedule.project_id.is_not(None),
            JobSchedule.project_id.in_(visible_project_ids(principal)),
        ),
    )


def check_schedule(
    uow: UnitOfWork, principal: Principal, schedule: JobSchedule, need: Access
) -> None:
    """A schedule follows its project like a job (without one: its creator's)."""
    if jobs_admin(principal):
        return
    mine = schedule.created_by is not None and schedule.created_by == principal.user_id
    if schedule.project_id is None:
        access = Access.NONE
        if mine:
            writer = principal.can(Permission.JOBS_WRITE)
            access = Access.WRITE if writer else Access.READ
    else:
        access = access_to_project(uow, principal, schedule.project_id)
        if mine:
            access = max(access, Access.READ)
    _deny("schedules", schedule.id, access, need)


def project_of_schedule(
    uow: UnitOfWork,
    principal: Principal,
    project_id: uuid.UUID | None,
    kwargs: dict[str, object],
) -> uuid.UUID | None:
    """The project a new or changed schedule works on, checked for WRITE: the one it
    names, and its task's dataset's (`project_of_job_params`)."""
    if project_id is not None:
        check_project(uow, principal, project_id, Access.WRITE)
    of_params = project_of_job_params(uow, principal, kwargs)
    return project_id if project_id is not None else of_params


# --------------------------------------------------------------------- forms


def project_of_form(form_id: str) -> uuid.UUID | None:
    """The project a saved form belongs to (`project.<id>`, `project-extras.<id>`)."""
    match = _PROJECT_FORM.match(form_id)
    return uuid.UUID(match["id"]) if match else None


def check_form(
    uow: UnitOfWork, principal: Principal, form_id: str, need: Access
) -> None:
    """A project's form follows its project; other forms are not project-scoped."""
    project_id = project_of_form(form_id)
    if project_id is not None:
        check_project(uow, principal, project_id, need)


__all__ = [
    "RESPONSES",
    "Access",
    "access_map",
    "access_to_dataset",
    "access_to_job",
    "access_to_project",
    "capabilities",
    "check_dataset",
    "check_form",
    "check_job",
    "check_project",
    "check_schedule",
    "is_admin",
    "project_access",
    "project_of_form",
    "project_of_job_params",
    "project_of_schedule",
    "visible_datasets",
    "visible_jobs",
    "visible_project_ids",
    "visible_projects",
    "visible_schedules",
]
