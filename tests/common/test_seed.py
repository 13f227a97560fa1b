"""Reference and demo data: `sync_roles`, `ensure_user`, `seed_demo` (idempotent, audited)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from ballast_common.db import DB, UnitOfWork, migrate, run_tx
from ballast_common.models import AuditLog, Permission, Project, Role, User
from ballast_common.models.user import role_permissions
from ballast_common.security import ROLE_PERMISSIONS, verify_password
from ballast_common.seed import (
    DEMO_PASSWORD_SUFFIX,
    DEMO_PROJECTS,
    DEMO_USERS,
    Credential,
    ensure_user,
    seed_demo,
    sync_roles,
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    database = DB(f"sqlite:///{tmp_path}/seed.db")
    migrate(db=database)
    try:
        yield database
    finally:
        database.dispose()


def seed(db: DB, *, random_passwords: bool = False) -> list[Credential]:
    return run_tx(lambda uow: seed_demo(uow, random_passwords=random_passwords), db=db)


def count(db: DB, model: type[Any]) -> int:
    with db.session() as session:
        return int(
            session.execute(select(func.count()).select_from(model)).scalar_one()
        )


def users(db: DB) -> dict[str, User]:
    with db.session() as session:
        return {u.username: u for u in session.execute(select(User)).scalars()}


def role_map(db: DB) -> dict[str, set[str]]:
    with db.session() as session:
        return {
            r.name: {p.name for p in r.permissions}
            for r in session.execute(select(Role)).scalars()
        }


def audits(db: DB) -> list[AuditLog]:
    with db.session() as session:
        return list(session.execute(select(AuditLog).order_by(AuditLog.id)).scalars())


EXPECTED_ROLES = {str(r): {str(p) for p in ps} for r, ps in ROLE_PERMISSIONS.items()}


def test_seed_creates_roles_users_and_projects(db: DB) -> None:
    creds = seed(db)
    assert [(c.username, c.role, c.created) for c in creds] == [
        (username, role, True) for username, role, _ in DEMO_USERS
    ]
    assert role_map(db) == EXPECTED_ROLES
    assert count(db, Permission) == len(set().union(*EXPECTED_ROLES.values()))
    found = users(db)
    assert set(found) == {"admin", "editor", "viewer"}
    for username, role, display in DEMO_USERS:
        assert found[username].role_names == [role]
        assert found[username].display_name == display
        assert found[username].is_active
    with db.session() as session:
        projects = list(session.execute(select(Project)).scalars())
    assert sorted(p.name for p in projects) == sorted(p[0] for p in DEMO_PROJECTS)
    assert {p.owner_id for p in projects} == {found["admin"].id}


def test_demo_passwords_verify(db: DB) -> None:
    creds = seed(db)
    found = users(db)
    for cred in creds:
        assert cred.password == f"{cred.username}{DEMO_PASSWORD_SUFFIX}"
        assert verify_password(cred.password, found[cred.username].password_hash)
        assert not verify_password("wrong", found[cred.username].password_hash)
    # The hash is never the password itself.
    assert all(
        cred.password not in found[cred.username].password_hash for cred in creds
    )


def test_seed_is_idempotent(db: DB) -> None:
    first = seed(db)
    before = {
        "users": count(db, User),
        "projects": count(db, Project),
        "roles": count(db, Role),
        "permissions": count(db, Permission),
        "audit": count(db, AuditLog),
    }
    hashes = {name: u.password_hash for name, u in users(db).items()}
    second = seed(db)
    assert [c.created for c in second] == [False, False, False]
    assert [(c.username, c.password, c.role) for c in second] == [
        (c.username, c.password, c.role) for c in first
    ]
    after = {
        "users": count(db, User),
        "projects": count(db, Project),
        "roles": count(db, Role),
        "permissions": count(db, Permission),
        "audit": count(db, AuditLog),
    }
    assert after == before, "a second seed changes nothing (and audits nothing)"
    assert before["users"] == 3
    assert before["projects"] == len(DEMO_PROJECTS)
    assert {name: u.password_hash for name, u in users(db).items()} == hashes
    assert role_map(db) == EXPECTED_ROLES


def test_every_created_row_has_an_audit_row(db: DB) -> None:
    seed(db)
    rows = audits(db)
    created = {(a.resource_type, a.resource_id) for a in rows if a.action == "create"}
    with db.session() as session:
        expected = (
            {("users", str(u.id)) for u in session.execute(select(User)).scalars()}
            | {
                ("projects", str(p.id))
                for p in session.execute(select(Project)).scalars()
            }
            | {("roles", str(r.id)) for r in session.execute(select(Role)).scalars()}
            | {
                ("permissions", str(p.id))
                for p in session.execute(select(Permission)).scalars()
            }
        )
    assert expected <= created
    assert len(created) == len(expected), "one create audit row per row"
    # Role grants and user role assignments are audited as updates with old/new values.
    updates = {
        (a.resource_type, a.resource_id): a for a in rows if a.action == "update"
    }
    with db.session() as session:
        for role in session.execute(select(Role)).scalars():
            row = updates[("roles", str(role.id))]
            assert row.old_values == {"permissions": []}
            assert row.new_values == {"permissions": sorted(EXPECTED_ROLES[role.name])}
        for user in session.execute(select(User)).scalars():
            row = updates[("users", str(user.id))]
            assert row.new_values == {"roles": user.role_names}
    # No secret lands in the audit trail.
    for row in rows:
        assert "-demo-pass" not in str(row.new_values)


def test_random_passwords_verify_and_differ(db: DB) -> None:
    creds = seed(db, random_passwords=True)
    found = users(db)
    passwords = [c.password for c in creds]
    assert len(set(passwords)) == 3
    for cred in creds:
        assert DEMO_PASSWORD_SUFFIX not in cred.password
        assert len(cred.password) >= 16
        assert verify_password(cred.password, found[cred.username].password_hash)
    again = seed(db, random_passwords=True)
    assert [(c.password, c.created) for c in again] == [("(unchanged)", False)] * 3
    for cred in creds:  # the first passwords still work
        assert verify_password(cred.password, users(db)[cred.username].password_hash)


def test_sync_roles_repairs_drift_and_audits_it(db: DB) -> None:
    run_tx(sync_roles, db=db)
    with db.engine.begin() as conn:
        editor_id = conn.execute(
            select(Role.id).where(Role.name == "editor")
        ).scalar_one()
        conn.execute(
            delete(role_permissions).where(role_permissions.c.role_id == editor_id)
        )
    assert role_map(db)["editor"] == set()
    before = count(db, AuditLog)
    run_tx(sync_roles, db=db)
    assert role_map(db) == EXPECTED_ROLES
    rows = audits(db)[before:]
    assert [(a.action, a.resource_type, a.resource_id) for a in rows] == [
        ("update", "roles", str(editor_id))
    ]
    assert rows[0].old_values == {"permissions": []}
    # In sync: nothing to do, nothing audited.
    run_tx(sync_roles, db=db)
    assert count(db, AuditLog) == before + 1


def test_ensure_user(db: DB) -> None:
    run_tx(sync_roles, db=db)

    def create(uow: UnitOfWork) -> bool:
        return ensure_user(uow, "zoe", "a-long-password", "editor", "Zoe Z")

    assert run_tx(create, db=db) is True
    assert run_tx(create, db=db) is False
    zoe = users(db)["zoe"]
    assert zoe.role_names == ["editor"]
    assert zoe.display_name == "Zoe Z"
    assert zoe.email == "zoe@example.com"
    assert verify_password("a-long-password", zoe.password_hash)
    no_name = run_tx(
        lambda uow: ensure_user(uow, "yan", "pw-pw-pw-pw", "viewer"), db=db
    )
    assert no_name is True
    assert users(db)["yan"].display_name == "yan"
