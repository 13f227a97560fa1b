"""Full + incrementals, drop the database, restore: every table equal (SQLite and
PostgreSQL, local object store)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, null, select

from ballast_backup import changes
from ballast_backup.manifest import BackupError
from ballast_common.db.engine import DB
from ballast_common.models import AuditLog, User, utcnow
from tests.backup.conftest import Env
from tests.backup.helpers import (
    add_draft,
    create_projects,
    delete_project,
    seed,
    state,
    state_of,
    update_project,
)

pytestmark = pytest.mark.integration


def _admin_id(db: DB):  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.execute(select(User.id).where(User.username == "admin")).scalar_one()


def test_full_incremental_drop_restore(env: Env) -> None:
    db = env.db
    backups = env.backups()
    seed(db)
    ids = create_projects(db, 6, "first")
    full = backups.snapshot_db("full")
    assert full.status == "good"
    assert full.objects
    assert all(len(o.sha256) == 64 for o in full.objects)
    assert full.schema_revision
    assert full.source["backend"] == env.backend

    more = create_projects(db, 3, "second")
    update_project(db, ids[0], name="renamed", budget=99.25)
    delete_project(db, ids[1], soft=True)
    delete_project(db, ids[2], soft=False)
    add_draft(db, _admin_id(db), "name", {"text": "half-typed"})
    at_first = state(db)
    incr1 = backups.snapshot_db("incremental")
    assert incr1.parent_id == full.id
    assert incr1.status == "good"
    assert incr1.change_log["audit_log"]["last"] > full.change_log["audit_log"]["last"]

    update_project(db, more[0], status="active", tags=["x"])
    delete_project(db, ids[3], soft=False)
    create_projects(db, 2, "third")
    final = state(db)
    incr2 = backups.snapshot_db("incremental")
    assert incr2.parent_id == incr1.id
    assert [m.id for m in backups.catalog.chain(incr2.id)] == [
        full.id,
        incr1.id,
        incr2.id,
    ]

    env.drop()
    result = backups.restore(incr2.id, target=str(db.url), force=True)
    assert result.switched
    assert state_of(str(db.url)) == final

    # An intermediate point in time: the chain up to the first incremental.
    pit = backups.restore(incr2.id, until=incr1.created)
    assert pit.chain == [full.id, incr1.id]
    assert not pit.switched
    # No password here (trust auth), so the shown URL is the URL.
    assert state_of(pit.target) == at_first


def test_incremental_needs_a_good_parent(env: Env) -> None:
    with pytest.raises(BackupError, match="take a full backup first"):
        env.backups().snapshot_db("incremental")


def test_restore_refuses_live_target_without_force(env: Env) -> None:
    seed(env.db)
    backups = env.backups()
    full = backups.snapshot_db("full")
    with pytest.raises(BackupError, match="needs --force"):
        backups.restore(full.id, target=str(env.db.url))


def test_drill_records_evidence(sqlite_env: Env) -> None:
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    with pytest.raises(BackupError, match="no good backup"):
        backups.drill()
    failed = backups.catalog.last_drill()
    assert failed is not None
    assert failed["success"] is False
    full = backups.snapshot_db("full")
    record = backups.drill()
    assert record["success"] is True
    assert record["backup_id"] == full.id
    assert record["rows"]["users"] == 3
    assert record["rpo_s"] >= 0
    assert backups.catalog.last_drill() == record


def test_large_tables_are_compared_on_the_rows_carried(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes, "FULL_COMPARE_ROWS", 3)
    seed(env.db)
    ids = create_projects(env.db, 6, "big")
    backups = env.backups()
    backups.snapshot_db("full")
    update_project(env.db, ids[0], name="changed")
    create_projects(env.db, 2, "new")
    expected = state(env.db)
    incr = backups.snapshot_db("incremental")
    assert incr.tables["projects"] == {
        "rows": 3,
        "checksum": incr.tables["projects"]["checksum"],
        "scope": "carried",
    }
    assert incr.status == "good"
    result = backups.restore(incr.id)
    assert state_of(result.target) == expected


def test_sql_null_and_json_null_survive_an_incremental(env: Env) -> None:
    seed(env.db)
    backups = env.backups()
    backups.snapshot_db("full")
    # The models write JSON null for None; rows written in SQL may hold SQL NULL.
    create_projects(env.db, 1, "json-null")
    with env.db.engine.begin() as conn:
        conn.execute(
            insert(AuditLog.__table__).values(
                action="note",
                resource_type="elsewhere",
                resource_id="x",
                old_values=null(),
                new_values=null(),
                timestamp=utcnow(),
            )
        )
    expected = state(env.db)
    incr = backups.snapshot_db("incremental")
    assert incr.status == "good"
    assert state_of(backups.restore(incr.id).target) == expected


def test_project_members_travel_with_their_project(env: Env) -> None:
    """Sharing is audited on the project: an incremental carries the member set whole,
    additions and removals alike."""
    from ballast_common.db import UnitOfWork, run_tx
    from ballast_common.models import ProjectMember

    db = env.db
    backups = env.backups()
    seed(db)
    project = create_projects(db, 1, "shared")[0]
    admin = _admin_id(db)
    backups.snapshot_db("full")

    def share(uow: UnitOfWork) -> None:
        uow.session.add(ProjectMember(project_id=project, user_id=admin, role="editor"))
        uow.audit("member_set", "projects", str(project), new={"role": "editor"})

    run_tx(share, db=db)
    shared = state(db)
    incr1 = backups.snapshot_db("incremental")
    assert incr1.status == "good"
    assert incr1.change_log["touched"] == {"projects": 1}

    def unshare(uow: UnitOfWork) -> None:
        member = uow.session.get(ProjectMember, (project, admin))
        uow.session.delete(member)
        uow.audit("member_removed", "projects", str(project), old={"role": "editor"})

    run_tx(unshare, db=db)
    final = state(db)
    incr2 = backups.snapshot_db("incremental")
    assert incr2.status == "good"
    assert state_of(backups.restore(incr2.id).target) == final
    assert state_of(backups.restore(incr2.id, until=incr1.created).target) == shared


@pytest.mark.parametrize("jobs", [1, 3])
def test_pg_restore_streamed_or_by_parallel_workers_is_the_same(
    pg_env: Env, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backup.restore_jobs`: 1 streams the dump into one pg_restore; more copies it
    to a checked temporary file first and restores it with that many workers."""
    from ballast_backup import dbio, verify

    db = pg_env.db
    seed(db)
    create_projects(db, 40, "parallel")
    add_draft(db, _admin_id(db), "name", {"text": "typed"})
    expected = state(db)
    backups = pg_env.backups(restore_jobs=jobs)
    assert backups.restore_jobs == jobs
    parallel: list[int] = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        parallel.append(kwargs["jobs"])
        return dbio.pg_restore_file(*args, **kwargs)

    monkeypatch.setattr(verify, "pg_restore_file", spy)
    full = backups.snapshot_db("full")  # its verification restores it once
    pg_env.drop()
    result = backups.restore(full.id, target=str(db.url), force=True)
    assert result.switched
    assert state_of(str(db.url)) == expected
    assert parallel == ([] if jobs == 1 else [jobs, jobs])
