"""`Repository[T]` on SQLite and PostgreSQL: CRUD, queries, versions, audit rows."""

from __future__ import annotations

import threading
import uuid
from datetime import date
from typing import Any

import pytest

from ballast_common.db import DB, UnitOfWork, WriteContext, row_dict, run_tx
from ballast_common.db.repository import PageResult
from ballast_common.errors import ConflictError, NotFoundError, ValidationError
from ballast_common.models import AuditLog, Form, Project, Role

from .helpers import audit_rows, count, load, new_project

CTX = WriteContext(
    user_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    correlation_id="corr-1",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    ip="203.0.113.7",
    user_agent="pytest-agent/1.0",
)


class TestCreateAndRead:
    def test_create_get_by_id(self, db: DB) -> None:
        def fn(uow: UnitOfWork) -> Project:
            return uow.repo(Project).create(
                {"name": "Alpha"}, priority=1, tags=["a", "b"]
            )

        project = run_tx(fn, db=db, ctx=CTX)
        assert project.version == 1
        assert project.created_at.tzinfo is not None

        def read(uow: UnitOfWork) -> Project | None:
            return uow.repo(Project).get_by_id(project.id)

        got = run_tx(read, db=db)
        assert got is not None
        assert (got.name, got.priority, got.tags, got.status) == (
            "Alpha",
            1,
            ["a", "b"],
            "draft",
        )
        # A string id works too; a malformed one is "not found".
        assert (
            run_tx(lambda uow: uow.repo(Project).get_by_id(str(project.id)), db=db)
            is not None
        )
        with pytest.raises(NotFoundError):
            run_tx(lambda uow: uow.repo(Project).get_by_id("not-a-uuid"), db=db)

        [audit] = audit_rows(db, project.id)
        assert audit.action == "create"
        assert audit.resource_type == "projects"
        assert audit.new_values is not None
        assert audit.new_values["name"] == "Alpha"
        assert audit.new_values["version"] == 1
        assert audit.old_values is None
        assert audit.user_id == CTX.user_id
        assert (audit.correlation_id, audit.trace_id) == (
            CTX.correlation_id,
            CTX.trace_id,
        )
        assert (audit.ip_address, audit.user_agent) == (CTX.ip, CTX.user_agent)

    def test_create_with_explicit_id_and_custom_resource_type(self, db: DB) -> None:
        pid = uuid.uuid4()
        run_tx(
            lambda uow: uow.repo(Project, resource_type="project").create(
                id=pid, name="X"
            ),
            db=db,
        )
        assert load(db, Project, pid).name == "X"
        assert audit_rows(db)[0].resource_type == "project"

    def test_get_missing_raises(self, db: DB) -> None:
        missing = uuid.uuid4()
        with pytest.raises(NotFoundError) as info:
            run_tx(lambda uow: uow.repo(Project).get(missing), db=db)
        assert info.value.details == {"resource_type": "projects", "id": str(missing)}

    def test_protected_and_unknown_fields_refused(self, db: DB) -> None:
        with pytest.raises(ValidationError) as info:
            run_tx(
                lambda uow: uow.repo(Project).create(name="x", version=9, nope=1), db=db
            )
        assert info.value.details["fields"] == ["nope", "version"]
        pid = new_project(db)
        with pytest.raises(ValidationError):
            run_tx(lambda uow: uow.repo(Project).update(pid, created_at=None), db=db)
        assert count(db, Project) == 1

    def test_find_by(self, db: DB) -> None:
        def fn(uow: UnitOfWork) -> None:
            repo = uow.repo(Project)
            repo.create(name="a", status="active", priority=1)
            repo.create(name="b", status="paused", priority=2)
            repo.create(
                name="c", status="done", priority=2, start_date=date(2024, 1, 2)
            )

        run_tx(fn, db=db)

        def names(**criteria: Any) -> list[str]:
            found = run_tx(lambda uow: uow.repo(Project).find_by(**criteria), db=db)
            return sorted(p.name for p in found)

        assert names() == ["a", "b", "c"]
        assert names(status="active") == ["a"]
        assert names(status=["active", "done"]) == ["a", "c"]
        assert names(status=("paused",), priority=2) == ["b"]
        assert names(start_date=None) == ["a", "b"]
        assert names(status=[]) == []
        with pytest.raises(ValidationError) as info:
            names(colour="red")
        assert info.value.details == {"fields": ["colour"]}

    def test_model_without_soft_delete_or_version(self, db: DB) -> None:
        def fn(uow: UnitOfWork) -> int:
            repo = uow.repo(Role)
            role = repo.create(name="admin")
            result = repo.update(role.id, description="all", expected_version=99)
            assert result.changed
            assert result.conflict is None
            assert repo.find_by(name="admin")[0].description == "all"
            assert repo.paginate().total == 1
            assert repo.delete(role.id) is True  # hard: no deleted_at column
            return role.id

        rid = run_tx(fn, db=db)
        assert load(db, Role, rid) is None


class TestUpdate:
    def test_update_bumps_version_and_audits(self, db: DB) -> None:
        pid = new_project(db, priority=3)

        def fn(uow: UnitOfWork) -> Any:
            return uow.repo(Project).update(
                pid, {"name": "Beta"}, priority=5, expected_version=1
            )

        result = run_tx(fn, db=db, ctx=CTX)
        assert result.changed
        assert result.conflict is None
        assert result.entity.version == 2
        row = load(db, Project, pid)
        assert (row.name, row.priority, row.version) == ("Beta", 5, 2)
        create, update = audit_rows(db, pid)
        assert create.action == "create"
        assert update.action == "update"
        assert update.old_values is not None
        assert update.new_values is not None
        assert {k: update.old_values[k] for k in ("name", "priority", "version")} == {
            "name": "Alpha",
            "priority": 3,
            "version": 1,
        }
        assert {k: update.new_values[k] for k in ("name", "priority", "version")} == {
            "name": "Beta",
            "priority": 5,
            "version": 2,
        }
        assert set(update.new_values) == {"name", "priority", "version", "updated_at"}
        assert update.user_id == CTX.user_id
        assert update.correlation_id == "corr-1"
        assert update.ip_address == "203.0.113.7"
        assert update.user_agent == "pytest-agent/1.0"
        assert row.updated_at.isoformat() == update.new_values["updated_at"]

    def test_no_real_change_no_version_no_audit(self, db: DB) -> None:
        pid = new_project(db, priority=3, tags=["x"])

        def fn(uow: UnitOfWork) -> Any:
            return uow.repo(Project).update(pid, name="Alpha", priority=3, tags=("x",))

        result = run_tx(fn, db=db)
        assert not result.changed
        assert load(db, Project, pid).version == 1
        assert [a.action for a in audit_rows(db, pid)] == ["create"]

    def test_only_changed_fields_audited(self, db: DB) -> None:
        pid = new_project(db, priority=3)
        run_tx(
            lambda uow: uow.repo(Project).update(pid, name="Alpha", priority=4), db=db
        )
        update = audit_rows(db, pid)[-1]
        assert update.new_values is not None
        assert "name" not in update.new_values
        assert update.new_values["priority"] == 4

    def test_stale_reject_raises_with_both_versions(self, db: DB) -> None:
        pid = new_project(db)
        run_tx(lambda uow: uow.repo(Project).update(pid, name="Second"), db=db)

        def stale(uow: UnitOfWork) -> Any:
            return uow.repo(Project).update(
                pid, name="Mine", expected_version=1, on_conflict="reject"
            )

        with pytest.raises(ConflictError) as info:
            run_tx(stale, db=db)
        details = info.value.details
        assert details["current"]["version"] == 2
        assert details["current"]["name"] == "Second"
        assert details["attempted"] == {"name": "Mine", "version": 1}
        assert info.value.status == 409
        row = load(db, Project, pid)
        assert (row.name, row.version) == ("Second", 2)
        assert len(audit_rows(db, pid)) == 2

    def test_stale_overwrite_applies_and_reports(self, db: DB) -> None:
        pid = new_project(db)
        run_tx(lambda uow: uow.repo(Project).update(pid, name="Second"), db=db)

        def stale(uow: UnitOfWork) -> Any:
            return uow.repo(Project).update(pid, name="Mine", expected_version=1)

        result = run_tx(stale, db=db)
        assert result.changed
        assert result.conflict is not None
        assert result.conflict.expected_version == 1
        assert result.conflict.current_version == 2
        assert result.conflict.current["name"] == "Second"
        row = load(db, Project, pid)
        assert (row.name, row.version) == ("Mine", 3)

    def test_matching_version_reject_applies(self, db: DB) -> None:
        pid = new_project(db)
        result = run_tx(
            lambda uow: uow.repo(Project).update(
                pid, name="N", expected_version=1, on_conflict="reject"
            ),
            db=db,
        )
        assert result.changed
        assert result.conflict is None

    def test_update_missing_or_deleted(self, db: DB) -> None:
        pid = new_project(db)
        run_tx(lambda uow: uow.repo(Project).delete(pid), db=db)
        with pytest.raises(NotFoundError):
            run_tx(lambda uow: uow.repo(Project).update(pid, name="x"), db=db)

    def test_rollback_leaves_no_change_and_no_audit(self, db: DB) -> None:
        pid = new_project(db)

        def fn(uow: UnitOfWork) -> None:
            uow.repo(Project).update(pid, name="Gone")
            uow.repo(Project).create(name="Also gone")
            assert uow.audit_count == 2
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            run_tx(fn, db=db)
        row = load(db, Project, pid)
        assert (row.name, row.version) == ("Alpha", 1)
        assert count(db, Project) == 1
        assert [a.action for a in audit_rows(db)] == ["create"]

    def test_form_json_data(self, db: DB) -> None:
        def fn(uow: UnitOfWork) -> uuid.UUID:
            return uow.repo(Form).create(form_id="settings", data={"a": 1}).id

        fid = run_tx(fn, db=db)
        result = run_tx(
            lambda uow: uow.repo(Form).update(fid, data={"a": 1, "b": [1, 2]}), db=db
        )
        assert result.changed
        row = load(db, Form, fid)
        assert (row.data, row.version) == ({"a": 1, "b": [1, 2]}, 2)
        same = run_tx(
            lambda uow: uow.repo(Form).update(fid, data={"b": [1, 2], "a": 1}), db=db
        )
        assert not same.changed


class TestDelete:
    def test_soft_delete(self, db: DB) -> None:
        pid = new_project(db)
        assert run_tx(lambda uow: uow.repo(Project).delete(pid), db=db) is True
        row = load(db, Project, pid)
        assert row is not None
        assert row.deleted_at is not None
        assert row.version == 2
        assert run_tx(lambda uow: uow.repo(Project).get_by_id(pid), db=db) is None
        found = run_tx(
            lambda uow: uow.repo(Project).get_by_id(pid, include_deleted=True), db=db
        )
        assert found is not None
        assert found.id == pid
        assert run_tx(lambda uow: uow.repo(Project).find_by(name="Alpha"), db=db) == []
        assert (
            len(
                run_tx(
                    lambda uow: uow.repo(Project).find_by(include_deleted=True), db=db
                )
            )
            == 1
        )
        # Deleting again is not an error.
        assert run_tx(lambda uow: uow.repo(Project).delete(pid), db=db) is False
        audit = audit_rows(db, pid)[-1]
        assert audit.action == "soft_delete"
        assert audit.old_values is not None
        assert audit.new_values is not None
        assert audit.old_values["deleted_at"] is None
        assert audit.new_values["deleted_at"] is not None
        assert audit.new_values["version"] == 2

    def test_hard_delete(self, db: DB) -> None:
        pid = new_project(db)
        assert (
            run_tx(lambda uow: uow.repo(Project).delete(pid, soft=False), db=db) is True
        )
        assert load(db, Project, pid) is None
        audit = audit_rows(db, pid)[-1]
        assert audit.action == "delete"
        assert audit.old_values is not None
        assert audit.old_values["name"] == "Alpha"
        assert audit.new_values is None

    def test_delete_stale_version_refused(self, db: DB) -> None:
        pid = new_project(db)
        run_tx(lambda uow: uow.repo(Project).update(pid, name="B"), db=db)
        with pytest.raises(ConflictError):
            run_tx(lambda uow: uow.repo(Project).delete(pid, expected_version=1), db=db)
        assert load(db, Project, pid).deleted_at is None

    def test_delete_missing(self, db: DB) -> None:
        assert (
            run_tx(lambda uow: uow.repo(Project).delete(uuid.uuid4()), db=db) is False
        )


class TestPaginate:
    @pytest.fixture
    def seeded(self, db: DB) -> DB:
        def fn(uow: UnitOfWork) -> None:
            repo = uow.repo(Project)
            for i in range(7):
                repo.create(
                    name=f"Project {i}",
                    description="special 50% off" if i == 3 else f"about {i}",
                    priority=i % 3,
                    status="active" if i % 2 else "draft",
                )
            gone = repo.create(name="Deleted one")
            repo.delete(gone.id)

        run_tx(fn, db=db)
        return db

    def _page(self, db: DB, *args: Any, **kwargs: Any) -> PageResult[Project]:
        return run_tx(lambda uow: uow.repo(Project).paginate(*args, **kwargs), db=db)

    def test_totals_and_pages(self, seeded: DB) -> None:
        first = self._page(seeded, 1, 3, order_by="name")
        assert (first.total, first.pages, first.page, first.size) == (7, 3, 1, 3)
        assert [p.name for p in first.items] == ["Project 0", "Project 1", "Project 2"]
        last = self._page(seeded, 3, 3, order_by="name")
        assert [p.name for p in last.items] == ["Project 6"]
        beyond = self._page(seeded, 9, 3)
        assert beyond.items == []
        assert beyond.total == 7
        assert self._page(seeded, include_deleted=True).total == 8

    def test_ordering(self, seeded: DB) -> None:
        desc = self._page(seeded, 1, 10, order_by="-name")
        assert [p.name for p in desc.items] == [
            f"Project {i}" for i in range(6, -1, -1)
        ]
        by_priority = self._page(seeded, 1, 10, order_by="priority")
        assert [p.priority for p in by_priority.items] == sorted(
            p.priority for p in desc.items
        )
        newest_first = self._page(seeded, 1, 10)
        created = [p.created_at for p in newest_first.items]
        assert created == sorted(created, reverse=True)

    def test_filters_and_search(self, seeded: DB) -> None:
        active = self._page(seeded, status="active", order_by="name")
        assert [p.name for p in active.items] == ["Project 1", "Project 3", "Project 5"]
        found = self._page(
            seeded, search="PROJECT 4", search_fields=["name", "description"]
        )
        assert [p.name for p in found.items] == ["Project 4"]
        # LIKE wildcards in the search text are literal.
        percent = self._page(seeded, search="%", search_fields=["description"])
        assert [p.name for p in percent.items] == ["Project 3"]
        assert self._page(seeded, search="t_0", search_fields=["name"]).total == 0
        assert self._page(seeded, search="t 0", search_fields=["name"]).total == 1
        assert self._page(seeded, search="\\", search_fields=["name"]).total == 0
        # No search fields: the search term is ignored.
        assert self._page(seeded, search="zzz").total == 7

    def test_bad_arguments(self, seeded: DB) -> None:
        with pytest.raises(ValidationError) as info:
            self._page(seeded, order_by="-colour")
        assert info.value.details == {"fields": ["order_by"]}
        with pytest.raises(ValidationError):
            self._page(seeded, 0, 10)
        with pytest.raises(ValidationError):
            self._page(seeded, 1, 501)
        with pytest.raises(ValidationError):
            self._page(seeded, colour="red")
        with pytest.raises(ValidationError) as info:
            self._page(seeded, search="x", search_fields=["nope"])
        assert info.value.details == {"fields": ["nope"]}

    def test_pages_of_empty_result(self) -> None:
        assert PageResult(items=[], total=0, page=1, size=10).pages == 1
        assert PageResult(items=[], total=0, page=1, size=0).pages == 1
        assert PageResult(items=[], total=11, page=1, size=5).pages == 3


class TestBulk:
    def test_bulk_create(self, db: DB) -> None:
        explicit = uuid.uuid4()

        def fn(uow: UnitOfWork) -> list[Project]:
            return uow.repo(Project).bulk_create(
                [
                    {"name": "a"},
                    {"name": "b", "priority": 1},
                    {"id": explicit, "name": "c"},
                ]
            )

        created = run_tx(fn, db=db, ctx=CTX)
        assert [p.name for p in created] == ["a", "b", "c"]
        assert created[2].id == explicit
        assert count(db, Project) == 3
        audits = audit_rows(db)
        assert [a.action for a in audits] == ["create"] * 3
        assert {a.resource_id for a in audits} == {str(p.id) for p in created}
        assert all(a.user_id == CTX.user_id for a in audits)

    def test_bulk_create_invalid_row_creates_nothing(self, db: DB) -> None:
        with pytest.raises(ValidationError):
            run_tx(
                lambda uow: uow.repo(Project).bulk_create([{"name": "a"}, {"nope": 1}]),
                db=db,
            )
        assert count(db, Project) == 0

    def test_bulk_update(self, db: DB) -> None:
        a, b, c = (new_project(db, name=n) for n in "abc")

        def fn(uow: UnitOfWork) -> int:
            return uow.repo(Project).bulk_update(
                [
                    {"id": a, "name": "A", "version": 1},
                    {"id": b, "name": "b"},  # no real change
                    {"id": str(c), "priority": 9},
                ]
            )

        assert run_tx(fn, db=db) == 2
        assert (load(db, Project, a).name, load(db, Project, a).version) == ("A", 2)
        assert load(db, Project, b).version == 1
        assert load(db, Project, c).priority == 9
        assert [x.action for x in audit_rows(db)].count("update") == 2

    def test_bulk_update_stale_applies_nothing(self, db: DB) -> None:
        a, b = new_project(db, name="a"), new_project(db, name="b")
        run_tx(lambda uow: uow.repo(Project).update(b, name="b2"), db=db)
        before = len(audit_rows(db))

        def fn(uow: UnitOfWork) -> int:
            return uow.repo(Project).bulk_update(
                [
                    {"id": a, "name": "A", "version": 1},
                    {"id": b, "name": "B", "version": 1},
                ]
            )

        with pytest.raises(ConflictError):
            run_tx(fn, db=db)
        assert load(db, Project, a).name == "a"
        assert load(db, Project, a).version == 1
        assert load(db, Project, b).name == "b2"
        assert len(audit_rows(db)) == before

    def test_bulk_update_needs_ids(self, db: DB) -> None:
        a = new_project(db)
        with pytest.raises(ValidationError):
            run_tx(
                lambda uow: uow.repo(Project).bulk_update(
                    [{"id": a, "name": "x"}, {"name": "y"}]
                ),
                db=db,
            )
        assert load(db, Project, a).name == "Alpha"


class TestRowDict:
    def test_json_safe(self, db: DB) -> None:
        pid = new_project(db, start_date=date(2024, 5, 6), budget=12.5)
        row = row_dict(load(db, Project, pid))
        assert row["id"] == str(pid)
        assert row["start_date"] == "2024-05-06"
        assert row["budget"] == 12.5
        assert isinstance(row["created_at"], str)


@pytest.mark.integration
class TestRowLocks:
    def test_stale_identity_map_does_not_hide_a_conflict(self, pg_db: DB) -> None:
        """A row read earlier in the same transaction is re-read under FOR UPDATE.

        Otherwise the version check would compare against the stale copy in the session
        and a concurrent change would be silently overwritten (lost update, duplicate
        version numbers).
        """
        pid = new_project(pg_db)

        def other_writer() -> None:
            run_tx(lambda uow: uow.repo(Project).update(pid, name="Theirs"), db=pg_db)

        def fn(uow: UnitOfWork) -> Any:
            repo = uow.repo(Project)
            seen = repo.get(pid)
            assert seen.version == 1
            thread = threading.Thread(target=other_writer)
            thread.start()
            thread.join()
            return repo.update(
                pid, name="Mine", expected_version=1, on_conflict="reject"
            )

        with pytest.raises(ConflictError) as info:
            run_tx(fn, db=pg_db)
        assert info.value.details["current"]["version"] == 2
        assert info.value.details["current"]["name"] == "Theirs"
        row = load(pg_db, Project, pid)
        assert (row.name, row.version) == ("Theirs", 2)

    def test_concurrent_updates_serialise_on_the_row(self, pg_db: DB) -> None:
        pid = new_project(pg_db, priority=0)
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def bump(n: int) -> None:
            try:
                barrier.wait()
                run_tx(
                    lambda uow: uow.repo(Project).update(pid, priority=n + 1), db=pg_db
                )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=bump, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert load(pg_db, Project, pid).version == 7
        versions = [
            a.new_values["version"] for a in audit_rows(pg_db, pid)[1:] if a.new_values
        ]
        assert versions == list(range(2, 8))


def test_audit_count_per_transaction(db: DB) -> None:
    def fn(uow: UnitOfWork) -> int:
        repo = uow.repo(Project)
        p = repo.create(name="x")
        repo.update(p.id, name="y")
        repo.update(p.id, name="y")  # no change: no audit
        uow.audit(
            "custom",
            "thing",
            "1",
            old={"a": 1},
            new={"b": uuid.UUID(int=1)},
            write_id="w",
        )
        return uow.audit_count

    assert run_tx(fn, db=db) == 3
    audits = audit_rows(db)
    custom = audits[-1]
    assert isinstance(custom, AuditLog)
    assert (custom.action, custom.write_id) == ("custom", "w")
    assert custom.new_values == {"b": str(uuid.UUID(int=1))}
