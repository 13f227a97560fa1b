"""Reference data (roles, permissions) and demo data (users, projects)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from ballast_common.db.uow import UnitOfWork
from ballast_common.models import Permission, Project, Role, User
from ballast_common.security import ROLE_PERMISSIONS, hash_password

# Fixed demo passwords for the embedded default (dev only): `make run` prints them.
DEMO_USERS: tuple[tuple[str, str, str], ...] = (
    ("admin", "admin", "Ada Admin"),
    ("editor", "editor", "Eddie Editor"),
    ("viewer", "viewer", "Vera Viewer"),
)
# The demo accounts of the embedded default; `ballast db seed --random-passwords` elsewhere.
DEMO_PASSWORD_SUFFIX = "-demo-pass"  # noqa: S105

DEMO_PROJECTS = (
    ("Churn model refresh", "active", 2, 12000.0, ["ml", "retention"]),
    ("Quarterly revenue dashboard", "draft", 3, 4500.0, ["finance"]),
    ("Warehouse sensor import", "paused", 4, 800.0, ["iot", "ingest"]),
    ("Pricing experiment analysis", "done", 1, 25000.0, ["pricing", "ab-test"]),
)


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    role: str
    created: bool


def sync_roles(uow: UnitOfWork) -> None:
    """Make the roles/permissions tables mirror `security.ROLE_PERMISSIONS`."""
    session = uow.session
    perms = {p.name: p for p in session.execute(select(Permission)).scalars()}
    wanted = {str(p) for ps in ROLE_PERMISSIONS.values() for p in ps}
    for name in sorted(wanted - set(perms)):
        perms[name] = uow.repo(Permission).create(name=name)
    roles = {r.name: r for r in session.execute(select(Role)).scalars()}
    for role, role_perms in ROLE_PERMISSIONS.items():
        row = roles.get(str(role))
        if row is None:
            row = uow.repo(Role).create(name=str(role), description=f"{role} role")
        names = sorted(str(p) for p in role_perms)
        if sorted(p.name for p in row.permissions) != names:
            old = sorted(p.name for p in row.permissions)
            row.permissions = [perms[n] for n in names]
            session.flush()
            uow.audit(
                "update",
                "roles",
                str(row.id),
                old={"permissions": old},
                new={"permissions": names},
            )


def ensure_user(
    uow: UnitOfWork, username: str, password: str, role: str, display_name: str = ""
) -> bool:
    """Create `username` with `role` unless it exists. Returns True when created."""
    session = uow.session
    if session.execute(
        select(User).where(User.username == username)
    ).scalar_one_or_none():
        return False
    role_row = session.execute(select(Role).where(Role.name == role)).scalar_one()
    user = uow.repo(User).create(
        username=username,
        display_name=display_name or username,
        email=f"{username}@example.com",
        password_hash=hash_password(password),
        preferences={"theme": "auto", "language": "en", "timezone": "UTC"},
    )
    user.roles = [role_row]
    session.flush()
    uow.audit("update", "users", str(user.id), old={"roles": []}, new={"roles": [role]})
    return True


def seed_demo(uow: UnitOfWork, *, random_passwords: bool = False) -> list[Credential]:
    """Roles, the three demo users and a few projects. Idempotent."""
    sync_roles(uow)
    creds = []
    admin_id = None
    for username, role, name in DEMO_USERS:
        password = (
            secrets.token_urlsafe(12)
            if random_passwords
            else f"{username}{DEMO_PASSWORD_SUFFIX}"
        )
        created = ensure_user(uow, username, password, role, name)
        creds.append(
            Credential(
                username,
                password if created or not random_passwords else "(unchanged)",
                role,
                created,
            )
        )
    admin = uow.session.execute(
        select(User).where(User.username == "admin")
    ).scalar_one()
    admin_id = admin.id
    existing = {p.name for p in uow.session.execute(select(Project)).scalars()}
    repo = uow.repo(Project)
    for i, (name, status, priority, budget, tags) in enumerate(DEMO_PROJECTS):
        if name in existing:
            continue
        repo.create(
            name=name,
            description=f"Demo project: {name.lower()}.",
            status=status,
            priority=priority,
            budget=budget,
            tags=tags,
            start_date=date(2026, 1 + i, 1),
            is_public=i % 2 == 0,
            owner_id=admin_id,
        )
    return creds
