"""Jobs: visibility (owner or admin), listing for the dashboard, enqueue/cancel/retry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, String, cast, func, select

from ballast_api.principal import Principal
from ballast_common import jobs
from ballast_common.db import UnitOfWork
from ballast_common.errors import NotFoundError
from ballast_common.jobs.repository import JobRepository
from ballast_common.models import Job
from ballast_common.security import Permission


def is_admin(principal: Principal) -> bool:
    return principal.can(Permission.JOBS_ADMIN)


def visible(uow: UnitOfWork, principal: Principal, job_id: uuid.UUID) -> Job:
    """The job if the caller owns it or is an admin; 404 otherwise (no existence leak)."""
    job = JobRepository(uow.session).lock(job_id)
    if job is None or (job.created_by != principal.user_id and not is_admin(principal)):
        raise NotFoundError(f"job {job_id} not found", details={"id": str(job_id)})
    return job


def page(
    uow: UnitOfWork,
    principal: Principal,
    *,
    page_no: int,
    size: int,
    statuses: list[str] | None,
    name: str | None,
    tag: str | None,
    created_by: uuid.UUID | None,
    mine: bool,
    finished_since: datetime | None,
) -> tuple[list[Job], int]:
    """My jobs (admins: everyone's unless `mine`), newest first."""
    where: list[ColumnElement[bool]] = []
    if not is_admin(principal) or mine:
        where.append(Job.created_by == principal.user_id)
    elif created_by is not None:
        where.append(Job.created_by == created_by)
    if statuses:
        where.append(Job.status.in_(statuses))
    if name:
        where.append(Job.name == name)
    if tag:
        # Tags are a short JSON list: match the quoted element in its text form (portable
        # between JSONB and SQLite's JSON text).
        escaped = tag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(cast(Job.tags, String).like(f'%"{escaped}"%', escape="\\"))
    if finished_since is not None:
        where.append(Job.completed_at > finished_since)
    total = uow.session.execute(
        select(func.count()).select_from(Job).where(*where)
    ).scalar_one()
    items = uow.session.execute(
        select(Job)
        .where(*where)
        .order_by(Job.created_at.desc(), Job.id)
        .offset((page_no - 1) * size)
        .limit(size)
    ).scalars()
    return list(items), int(total)


def summary(uow: UnitOfWork, principal: Principal, mine: bool) -> dict[str, int]:
    """Counts by status (for badges)."""
    stmt = select(Job.status, func.count()).group_by(Job.status)
    if not is_admin(principal) or mine:
        stmt = stmt.where(Job.created_by == principal.user_id)
    counts = {str(s): 0 for s in jobs.JobStatus}
    for status, count in uow.session.execute(stmt):
        counts[str(status)] = int(count)
    return counts
