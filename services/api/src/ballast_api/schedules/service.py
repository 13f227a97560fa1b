"""Recurring jobs: who may see and change which schedule.

Every access decision about schedules is made here (`authorize` and `visible_to`), so
project-level authorization can replace the role checks in one place.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import ColumnElement, true

from ballast_api.principal import Principal
from ballast_common.db import UnitOfWork
from ballast_common.errors import NotFoundError, PermissionDenied
from ballast_common.jobs import schedules
from ballast_common.models import JobSchedule
from ballast_common.security import Permission

Action = Literal["read", "write"]
_NEEDS = {"read": Permission.JOBS_READ, "write": Permission.JOBS_WRITE}


def _is_admin(principal: Principal) -> bool:
    return principal.can(Permission.JOBS_ADMIN)


def authorize(
    principal: Principal, action: Action, schedule: JobSchedule | None = None
) -> None:
    """Allow `action` on `schedule` (None: on schedules in general) or raise.

    Today: the role's jobs:read / jobs:write permission, and a schedule belongs to its
    creator (admins, with jobs:admin, reach every schedule).

    Raises:
        PermissionDenied: the role lacks the permission (403).
        NotFoundError: someone else's schedule (404: its existence is not revealed).
    """
    needed = _NEEDS[action]
    if not principal.can(needed):
        raise PermissionDenied(
            f"permission {needed} required",
            details={"permission": str(needed), "roles": list(principal.roles)},
        )
    if schedule is not None and not (
        _is_admin(principal) or schedule.created_by == principal.user_id
    ):
        raise NotFoundError(
            f"schedule {schedule.id} not found", details={"id": str(schedule.id)}
        )


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The schedules `principal` may list (the query form of `authorize(read)`)."""
    if _is_admin(principal):
        return true()
    return JobSchedule.created_by == principal.user_id


def get(
    uow: UnitOfWork, principal: Principal, schedule_id: uuid.UUID, action: Action
) -> JobSchedule:
    """The schedule, locked, if `principal` may do `action` on it; 404 otherwise."""
    row = schedules.lock(uow, schedule_id)
    if row is None:
        raise NotFoundError(
            f"schedule {schedule_id} not found", details={"id": str(schedule_id)}
        )
    authorize(principal, action, row)
    return row
