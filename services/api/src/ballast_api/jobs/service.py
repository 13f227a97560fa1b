"""Jobs: visibility (ballast_api.policy: my own, those of projects I may see; admins:
all), listing for the dashboard, enqueue/cancel/retry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, String, cast, func, select

from ballast_api import policy
from ballast_api.policy import Access
from ballast_api.principal import Principal
from ballast_common import jobs
from ballast_common.db import UnitOfWork
from ballast_common.jobs.repository import JobRepository
from ballast_common.models import Job


def visible(
    uow: UnitOfWork,
    principal: Principal,
    job_id: uuid.UUID,
    need: Access = Access.READ,
) -> Job:
    """The job if the caller may see it (404 otherwise: no existence leak) and has
    `need` on it (403 otherwise)."""
    return visible_with_access(uow, principal, job_id, need)[0]


def visible_with_access(
    uow: UnitOfWork,
    principal: Principal,
    job_id: uuid.UUID,
    need: Access = Access.READ,
) -> tuple[Job, Access]:
    """`visible`, and the caller's access to the job (computed once)."""
    job = JobRepository(uow.session).lock(job_id)
    return policy.check_job(uow, principal, job, job_id, need)


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
    """The jobs I may see (admins: everyone's) or only my own (`mine`), newest first."""
    where: list[ColumnElement[bool]] = [policy.visible_jobs(principal)]
    if mine:
        where.append(Job.created_by == principal.user_id)
    if created_by is not None:
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
    """Counts by status (for badges) of the jobs `page` would list."""
    stmt = (
        select(Job.status, func.count())
        .where(policy.visible_jobs(principal))
        .group_by(Job.status)
    )
    if mine:
        stmt = stmt.where(Job.created_by == principal.user_id)
    counts = {str(s): 0 for s in jobs.JobStatus}
    for status, count in uow.session.execute(stmt):
        counts[str(status)] = int(count)
    return counts
