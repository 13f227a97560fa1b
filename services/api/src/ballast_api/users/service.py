"""User administration and personal preferences."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select

from ballast_api.auth.service import revoke_all
from ballast_common.contracts import Preferences, UserAdminRead, UserCreate, UserUpdate
from ballast_common.db import PageResult, UnitOfWork
from ballast_common.errors import ConflictError, ValidationError
from ballast_common.models import Role, User


def read(user: User) -> UserAdminRead:
    return UserAdminRead(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        email=user.email,
        is_active=user.is_active,
        roles=user.role_names,
        version=user.version,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _roles(uow: UnitOfWork, names: list[str]) -> list[Role]:
    rows = list(uow.session.execute(select(Role).where(Role.name.in_(names))).scalars())
    missing = sorted(set(names) - {r.name for r in rows})
    if missing:
        raise ValidationError(
            f"unknown role(s): {', '.join(missing)}", details={"fields": ["roles"]}
        )
    return rows


def _set_roles(uow: UnitOfWork, user: User, names: list[str]) -> None:
    old = user.role_names
    new = sorted(set(names))
    if old == new:
        return
    user.roles = _roles(uow, new)
    uow.session.flush()
    uow.audit("update", "users", str(user.id), old={"roles": old}, new={"roles": new})


def page(uow: UnitOfWork, page_no: int, size: int, q: str | None) -> PageResult[User]:
    stmt = select(User).where(User.deleted_at.is_(None))
    if q:
        pattern = f"%{q.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(User.username).like(pattern),
                func.lower(User.display_name).like(pattern),
            )
        )
    total = uow.session.execute(
        select(func.count()).select_from(stmt.subquery())
    ).scalar_one()
    items = list(
        uow.session.execute(
            stmt.order_by(User.username).offset((page_no - 1) * size).limit(size)
        ).scalars()
    )
    return PageResult(items=items, total=int(total), page=page_no, size=size)


def create(uow: UnitOfWork, body: UserCreate, password_hash: str) -> UserAdminRead:
    """Create a user; the caller hashes the password (off the event loop)."""
    taken = uow.session.execute(
        select(User.id).where(User.username == body.username)
    ).first()
    if taken is not None:
        raise ConflictError(
            f"username {body.username!r} is taken",
            current={"username": body.username},
            attempted={"username": body.username},
            details={"fields": ["username"]},
        )
    user = uow.repo(User).create(
        username=body.username,
        display_name=body.display_name or body.username,
        email=str(body.email) if body.email else None,
        password_hash=password_hash,
        preferences=Preferences().model_dump(),
    )
    _set_roles(uow, user, list(body.roles))
    return read(user)


def update(
    uow: UnitOfWork, actor: uuid.UUID, user_id: uuid.UUID, body: UserUpdate
) -> UserAdminRead:
    repo = uow.repo(User)
    user = repo.get(user_id, for_update=True)
    changes: dict[str, Any] = body.model_dump(
        exclude_unset=True, exclude={"roles", "expected_version"}
    )
    if "email" in changes and changes["email"] is not None:
        changes["email"] = str(changes["email"])
    if user.id == actor and (
        changes.get("is_active") is False
        or (body.roles is not None and "admin" not in body.roles)
    ):
        raise ValidationError(
            "you cannot disable yourself or remove your own admin role",
            details={"fields": ["is_active", "roles"]},
        )
    was_active, old_roles = user.is_active, set(user.role_names)
    repo.update_entity(
        user, changes, expected_version=body.expected_version, on_conflict="reject"
    )
    if body.roles is not None:
        _set_roles(uow, user, list(body.roles))
    # Sessions carry no roles: every request reads them. Ending the user's sessions all
    # the same makes a role change or a deactivation final at once: nothing opened under
    # the old rights (on any replica, in any browser) goes on; the next login starts a
    # new session. One's own changes (only additions are allowed) end nothing.
    if user.id != actor:
        if was_active and not user.is_active:
            revoke_all(uow, user.id, by="deactivated")
        elif set(user.role_names) != old_roles:
            revoke_all(uow, user.id, by="role_change")
    return read(user)


def get_preferences(uow: UnitOfWork, user_id: uuid.UUID) -> Preferences:
    user = uow.repo(User).get(user_id)
    return Preferences.model_validate(
        {**Preferences().model_dump(), **(user.preferences or {})}
    )


def set_preferences(
    uow: UnitOfWork, user_id: uuid.UUID, prefs: Preferences
) -> Preferences:
    repo = uow.repo(User)
    user = repo.get(user_id, for_update=True)
    repo.update_entity(user, {"preferences": prefs.model_dump()})
    return prefs
