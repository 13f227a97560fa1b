"""Recurring jobs: who may see and change which schedule.

The role check is here (`authorize`); which schedule is decided by the api's policy
(`ballast_api.policy`: a schedule follows its project like a job, without one it is its
creator's).
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import ColumnElement

from ballast_api import policy
from ballast_api.policy import Access
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


def authorize(principal: Principal, action: Action) -> None:
    """Allow `action` on schedules in general (the role's jobs:read / jobs:write) or 403."""
    needed = _NEEDS[action]
    if not principal.can(needed):
        raise PermissionDenied(
            f"permission {needed} required",
            details={"permission": str(needed), "roles": list(principal.roles)},
        )


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The schedules `principal` may list (mine, those of projects I may see; admins:
    all)."""
    return policy.visible_schedules(principal)


def get(
    uow: UnitOfWork, principal: Principal, schedule_id: uuid.UUID, action: Action
) -> JobSchedule:
    """The schedule, locked, if `principal` may do `action` on it; 404 otherwise."""
    row = schedules.lock(uow, schedule_id)
    if row is None:
        raise NotFoundError(
            f"schedule {schedule_id} not found", details={"id": str(schedule_id)}
        )
    authorize(principal, action)
    policy.check_schedule(
        uow, principal, row, Access.READ if action == "read" else Access.WRITE
    )
    return row
