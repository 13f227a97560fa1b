"""Reading and locking job rows: every query the runtime, the sweeper and the api make
of `jobs` rows, in one place (the write side is `lifecycle.transition`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ballast_common.jobs.contract import JobStatus
from ballast_common.models import Job


class JobRepository:
    """Job rows of one session (a unit of work's)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self, job_id: uuid.UUID) -> Job | None:
        """The row, locked for this transaction (waits for a concurrent writer)."""
        return self.session.execute(
            select(Job).where(Job.id == job_id).with_for_update()
        ).scalar_one_or_none()

    def lock_running(self, job_id: uuid.UUID) -> Job | None:
        """The row if it is still RUNNING and nobody else holds it (skip, don't wait)."""
        return self.session.execute(
            select(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()

    def running_ids(self, limit: int) -> list[uuid.UUID]:
        """Ids of RUNNING jobs, read without locks (heartbeats update them all the time)."""
        return list(
            self.session.execute(
                select(Job.id).where(Job.status == JobStatus.RUNNING).limit(limit)
            ).scalars()
        )

    def due_unsent(
        self, now: datetime, resend_before: datetime, limit: int
    ) -> list[Job]:
        """PENDING jobs that are due and were never sent or sent before `resend_before`,
        most urgent first, locked (rows another sweeper holds are skipped)."""
        return list(
            self.session.execute(
                select(Job)
                .where(
                    Job.status == JobStatus.PENDING,
                    or_(Job.scheduled_at.is_(None), Job.scheduled_at <= now),
                    or_(Job.dispatched_at.is_(None), Job.dispatched_at < resend_before),
                )
                .order_by(Job.priority.desc(), Job.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )

    def all_of(self, ids: Iterable[uuid.UUID]) -> list[Job]:
        wanted = list(ids)
        if not wanted:
            return []
        return list(
            self.session.execute(select(Job).where(Job.id.in_(wanted))).scalars()
        )

    def statuses(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Status by id of the jobs that exist among `ids`."""
        wanted = list(ids)
        if not wanted:
            return {}
        rows = self.session.execute(
            select(Job.id, Job.status).where(Job.id.in_(wanted))
        ).tuples()
        return {job_id: str(status) for job_id, status in rows}
