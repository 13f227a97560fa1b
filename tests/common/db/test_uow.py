"""`UnitOfWork`, idempotent writes, `run_tx` / `run_tx_async` retries, `is_transient`."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from ballast_common.db import (
    DB,
    Replay,
    UnitOfWork,
    WriteContext,
    WriteIdRace,
    fingerprint,
    init_db,
    is_transient,
    reset_db,
    run_tx,
    run_tx_async,
)
from ballast_common.errors import (
    ConflictError,
    NotFoundError,
    TransientError,
    ValidationError,
)
from ballast_common.models import Project, WriteRecord

from .helpers import audit_rows, count, load, new_project, write_records


def _dbapi_error(orig: BaseException, *, invalidated: bool = False) -> DBAPIError:
    return OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)


class _Orig(Exception):
    """A driver exception with optional SQLSTATE attributes (psycopg / psycopg2 style)."""

    def __init__(
        self, message: str, sqlstate: str | None = None, pgcode: str | None = None
    ):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.pgcode = pgcode


class TestIsTransient:
    @pytest.mark.parametrize(
        "exc",
        [
            TransientError("redis down"),
            WriteIdRace("claimed"),
            ConnectionResetError("reset"),
            TimeoutError("slow"),
            _dbapi_error(_Orig("could not serialize access", sqlstate="40001")),
            _dbapi_error(_Orig("deadlock detected", sqlstate="40P01")),
            _dbapi_error(_Orig("lock not available", pgcode="55P03")),
            _dbapi_error(_Orig("terminating connection", sqlstate="57P01")),
            _dbapi_error(_Orig("the database system is starting up", sqlstate="57P03")),
            _dbapi_error(_Orig("connection failure", sqlstate="08006")),
            _dbapi_error(psycopg.errors.SerializationFailure("could not serialize")),
            _dbapi_error(psycopg.errors.DeadlockDetected("deadlock")),
            _dbapi_error(_Orig("anything"), invalidated=True),
            _dbapi_error(_Orig("database is locked")),
            _dbapi_error(_Orig("server closed the connection unexpectedly")),
            _dbapi_error(_Orig("consuming input failed: EOF")),
            _dbapi_error(
                _Orig('connection to server at "127.0.0.1" failed: Connection refused')
            ),
            _dbapi_error(
                _Orig(
                    'connection failed: connection to server at "127.0.0.1", port 5 failed: '
                    "FATAL:  the database system is starting up"
                )
            ),
            _dbapi_error(_Orig("FATAL:  the database system is shutting down")),
        ],
        ids=repr,
    )
    def test_transient(self, exc: BaseException) -> None:
        assert is_transient(exc)

    @pytest.mark.parametrize(
        "exc",
        [
            ValueError("bad"),
            ConflictError("stale"),
            ValidationError("bad input"),
            NotFoundError("gone"),
            _dbapi_error(_Orig("duplicate key", sqlstate="23505")),
            _dbapi_error(psycopg.errors.UniqueViolation("duplicate key")),
            _dbapi_error(_Orig("syntax error")),
            # A SQLSTATE that is not transient wins over a scary-looking message.
            _dbapi_error(_Orig("server closed the connection", sqlstate="42601")),
        ],
        ids=repr,
    )
    def test_not_transient(self, exc: BaseException) -> None:
        assert not is_transient(exc)


class TestFingerprint:
    def test_stable_and_order_independent(self) -> None:
        assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
        assert fingerprint({"a": 1}) != fingerprint({"a": 2})
        assert len(fingerprint({"d": datetime(2024, 1, 1, tzinfo=UTC)})) == 64


class TestUnitOfWork:
    def test_context_manager_commits(self, db: DB) -> None:
        calls: list[str] = []
        with UnitOfWork(db.session()) as uow:
            uow.repo(Project).create(name="ctx")
            uow.after_commit(lambda: calls.append("done"))
        assert calls == ["done"]
        assert count(db, Project) == 1

    def test_context_manager_rolls_back(self, db: DB) -> None:
        calls: list[str] = []

        def failing() -> None:
            with UnitOfWork(db.session()) as uow:
                uow.repo(Project).create(name="ctx")
                uow.after_commit(lambda: calls.append("done"))
                uow.flush()
                raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            failing()
        assert calls == []
        assert count(db, Project) == 0

    def test_after_commit_runs_once_after_commit(self, db: DB) -> None:
        seen: list[int] = []

        def fn(uow: UnitOfWork) -> None:
            uow.repo(Project).create(name="x")
            # Not yet committed: another connection does not see the row.
            uow.after_commit(lambda: seen.append(count(db, Project)))

        run_tx(fn, db=db)
        assert seen == [1]

    def test_after_commit_dropped_on_failed_attempt(self, db: DB) -> None:
        seen: list[int] = []
        attempts: list[int] = []

        def fn(uow: UnitOfWork) -> None:
            attempts.append(1)
            uow.after_commit(lambda: seen.append(len(attempts)))
            if len(attempts) == 1:
                raise TransientError("retry me")

        run_tx(fn, db=db, sleep=lambda _d: None)
        assert seen == [2]

    def test_run_tx_uses_default_db(self, db: DB) -> None:
        init_db(db)
        try:
            run_tx(lambda uow: uow.repo(Project).create(name="default"))
        finally:
            reset_db()
        assert count(db, Project) == 1

    def test_write_context_with_user(self) -> None:
        uid = uuid.uuid4()
        ctx = WriteContext(correlation_id="c").with_user(uid)
        assert (ctx.user_id, ctx.correlation_id) == (uid, "c")


def _create_once(
    write_id: str | None, name: str, calls: list[int] | None = None
) -> Any:
    """An idempotent "create project" request."""

    def fn(uow: UnitOfWork) -> Replay:
        def work() -> tuple[int, dict[str, Any]]:
            if calls is not None:
                calls.append(1)
            project = uow.repo(Project).create(name=name)
            return 201, {
                "id": project.id,
                "name": project.name,
                "version": project.version,
            }

        return uow.idempotent(write_id, "create_project", {"name": name}, work)

    return fn


class TestIdempotency:
    def test_same_write_id_twice_one_effect(self, db: DB) -> None:
        ctx = WriteContext(user_id=uuid.uuid4(), correlation_id="c-1")
        calls: list[int] = []
        first = run_tx(_create_once("w-1", "Alpha", calls), db=db, ctx=ctx)
        second = run_tx(_create_once("w-1", "Alpha", calls), db=db, ctx=ctx)
        assert calls == [1]
        assert not first.replayed
        assert second.replayed
        assert (first.status_code, first.response) == (
            second.status_code,
            second.response,
        )
        # JSON-safe on the first call too (the id is a string, as in the replay).
        assert first.response["id"] == second.response["id"]
        assert isinstance(first.response["id"], str)
        assert count(db, Project) == 1
        [record] = write_records(db)
        assert (record.write_id, record.operation, record.status_code) == (
            "w-1",
            "create_project",
            201,
        )
        assert record.user_id == ctx.user_id
        [audit] = audit_rows(db)
        assert audit.write_id == "w-1"

    def test_without_write_id_runs_every_time(self, db: DB) -> None:
        a = run_tx(_create_once(None, "Alpha"), db=db)
        b = run_tx(_create_once(None, "Alpha"), db=db)
        assert not a.replayed
        assert not b.replayed
        assert count(db, Project) == 2
        assert write_records(db) == []

    def test_same_id_different_payload_refused(self, db: DB) -> None:
        run_tx(_create_once("w-2", "Alpha"), db=db)
        with pytest.raises(ValidationError) as info:
            run_tx(_create_once("w-2", "Beta"), db=db)
        assert info.value.details == {"fields": ["write_id"], "write_id": "w-2"}

        def other_operation(uow: UnitOfWork) -> Replay:
            return uow.idempotent(
                "w-2", "delete_project", {"name": "Alpha"}, lambda: (204, {})
            )

        with pytest.raises(ValidationError):
            run_tx(other_operation, db=db)
        assert count(db, Project) == 1

    @pytest.mark.parametrize("write_id", ["", "x" * 101])
    def test_bad_write_id(self, db: DB, write_id: str) -> None:
        with pytest.raises(ValidationError):
            run_tx(_create_once(write_id, "Alpha"), db=db)
        assert count(db, Project) == 0

    def test_failed_write_leaves_no_record(self, db: DB) -> None:
        def fn(uow: UnitOfWork) -> Replay:
            def work() -> tuple[int, dict[str, Any]]:
                uow.repo(Project).create(name="x")
                raise ConflictError("nope")

            return uow.idempotent("w-3", "create_project", {}, work)

        with pytest.raises(ConflictError):
            run_tx(fn, db=db)
        assert write_records(db) == []
        assert count(db, Project) == 0
        # The id is free: a later attempt runs.
        assert not run_tx(_create_once("w-3", "Alpha"), db=db).replayed

    def test_audit_outside_idempotent_block_has_no_write_id(self, db: DB) -> None:
        def fn(uow: UnitOfWork) -> None:
            uow.idempotent("outer", "op", {}, lambda: (200, {"ok": True}))
            uow.audit("after", "thing", "1")

        run_tx(fn, db=db)
        [audit] = audit_rows(db)
        assert audit.write_id is None  # outside the idempotent block

    @pytest.mark.integration
    def test_concurrent_duplicates_one_effect(self, pg_db: DB) -> None:
        """Two requests with one write id at once: the second blocks, then replays."""
        claimed = threading.Event()
        results: dict[str, Replay] = {}
        sleeps: dict[str, list[float]] = {"a": [], "b": []}
        calls: list[str] = []
        errors: list[BaseException] = []

        def request(name: str) -> None:
            def fn(uow: UnitOfWork) -> Replay:
                def work() -> tuple[int, dict[str, Any]]:
                    calls.append(name)
                    project = uow.repo(Project).create(name="Once")
                    claimed.set()
                    # Hold the claim while the duplicate arrives.
                    threading.Event().wait(0.4)
                    return 201, {"id": str(project.id)}

                return uow.idempotent("dup-1", "create_project", {"name": "Once"}, work)

            try:
                results[name] = run_tx(fn, db=pg_db, sleep=sleeps[name].append)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        first = threading.Thread(target=request, args=("a",))
        first.start()
        assert claimed.wait(10)
        second = threading.Thread(target=request, args=("b",))
        second.start()
        first.join()
        second.join()
        assert errors == []
        assert calls == ["a"]
        assert not results["a"].replayed
        assert results["b"].replayed
        assert results["a"].response == results["b"].response
        assert results["a"].status_code == results["b"].status_code == 201
        assert sleeps["b"] == []  # waited on the claim, then replayed without a retry
        assert count(pg_db, Project) == 1
        assert len(audit_rows(pg_db)) == 1
        assert len(write_records(pg_db)) == 1

    @pytest.mark.integration
    def test_claimant_that_rolls_back_leaves_the_id_free(self, pg_db: DB) -> None:
        """A request waiting on a claim whose transaction aborts claims the id and runs."""
        holder = pg_db.session()
        try:
            holder.add(
                WriteRecord(
                    write_id="race-1",
                    operation="op",
                    fingerprint=fingerprint({}),
                    status_code=0,
                    response={},
                )
            )
            holder.flush()
            released = threading.Timer(0.3, holder.rollback)
            released.start()
            replay = run_tx(
                lambda uow: uow.idempotent(
                    "race-1", "op", {}, lambda: (201, {"ran": True})
                ),
                db=pg_db,
                attempts=1,
            )
            released.join()
            assert not replay.replayed
            assert replay.response == {"ran": True}
            assert [r.status_code for r in write_records(pg_db)] == [201]
        finally:
            holder.close()

    def test_unfinished_claim_is_write_id_race(self, db: DB) -> None:
        """A claim row still at status 0 (its transaction not finished) is a race."""
        with db.session() as session, session.begin():
            session.add(
                WriteRecord(
                    write_id="race-2",
                    operation="op",
                    fingerprint=fingerprint({}),
                    status_code=0,
                    response={},
                )
            )
        with pytest.raises(WriteIdRace) as info:
            run_tx(
                lambda uow: uow.idempotent("race-2", "op", {}, lambda: (200, {})),
                db=db,
                attempts=1,
            )
        assert is_transient(info.value)

    def test_write_id_of_another_user_is_refused(self, db: DB) -> None:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        run_tx(
            lambda uow: uow.idempotent("mine", "op", {}, lambda: (200, {})),
            db=db,
            ctx=WriteContext(user_id=alice),
        )
        with pytest.raises(ValidationError):
            run_tx(
                lambda uow: uow.idempotent("mine", "op", {}, lambda: (200, {})),
                db=db,
                ctx=WriteContext(user_id=bob),
            )


class TestRunTxRetries:
    def test_retries_transient_then_succeeds(self, db: DB) -> None:
        delays: list[float] = []
        attempts: list[int] = []

        def fn(uow: UnitOfWork) -> str:
            attempts.append(1)
            uow.repo(Project).create(name=f"try {len(attempts)}")
            if len(attempts) <= 3:
                raise TransientError("flaky")
            return "ok"

        assert run_tx(fn, db=db, attempts=5, sleep=delays.append) == "ok"
        assert len(attempts) == 4
        assert len(delays) == 3
        assert all(0 <= d <= 2.0 for d in delays)
        # Only the successful attempt's writes remain.
        assert [p.name for p in load_all(db)] == ["try 4"]
        assert len(audit_rows(db)) == 1

    def test_retries_simulated_serialization_failure(self, db: DB) -> None:
        delays: list[float] = []
        attempts: list[int] = []

        def fn(_uow: UnitOfWork) -> int:
            attempts.append(1)
            if len(attempts) == 1:
                raise _dbapi_error(
                    psycopg.errors.SerializationFailure("could not serialize")
                )
            return len(attempts)

        assert run_tx(fn, db=db, sleep=delays.append) == 2
        assert len(delays) == 1

    def test_non_transient_raised_at_once(self, db: DB) -> None:
        delays: list[float] = []
        attempts: list[int] = []

        def fn(_uow: UnitOfWork) -> None:
            attempts.append(1)
            raise ValueError("bug")

        with pytest.raises(ValueError, match="bug"):
            run_tx(fn, db=db, attempts=5, sleep=delays.append)
        assert attempts == [1]
        assert delays == []

    def test_gives_up_after_attempts(self, db: DB) -> None:
        delays: list[float] = []
        attempts: list[int] = []

        def fn(uow: UnitOfWork) -> None:
            attempts.append(1)
            uow.repo(Project).create(name="never")
            raise TransientError("still down")

        with pytest.raises(TransientError, match="still down"):
            run_tx(fn, db=db, attempts=3, sleep=delays.append)
        assert len(attempts) == 3
        assert len(delays) == 2
        assert count(db, Project) == 0

    def test_default_attempts_from_db(self, db: DB) -> None:
        limited = DB(db.url, tx_retries=2)
        attempts: list[int] = []

        def fn(_uow: UnitOfWork) -> None:
            attempts.append(1)
            raise TransientError("down")

        try:
            with pytest.raises(TransientError):
                run_tx(fn, db=limited, sleep=lambda _d: None)
        finally:
            limited.dispose()
        assert len(attempts) == 2

    @pytest.mark.integration
    def test_real_serialization_failure_retried(self, pg_db: DB) -> None:
        """A REPEATABLE READ transaction loses a race (SQLSTATE 40001) and is retried."""
        pid = new_project(pg_db)
        attempts: list[int] = []
        delays: list[float] = []

        def other_writer() -> None:
            run_tx(lambda uow: uow.repo(Project).update(pid, priority=9), db=pg_db)

        def fn(uow: UnitOfWork) -> int:
            attempts.append(1)
            uow.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            repo = uow.repo(Project)
            repo.get(pid)  # takes the snapshot
            if len(attempts) == 1:
                thread = threading.Thread(target=other_writer)
                thread.start()
                thread.join()
            return repo.update(pid, name="Mine").entity.version

        assert run_tx(fn, db=pg_db, sleep=delays.append) == 3
        assert len(attempts) == 2
        assert len(delays) == 1
        row = load(pg_db, Project, pid)
        assert (row.name, row.priority, row.version) == ("Mine", 9, 3)
        assert [a.action for a in audit_rows(pg_db, pid)] == [
            "create",
            "update",
            "update",
        ]

    def test_ambiguous_commit_replays(self, db: DB) -> None:
        """The commit landed but the client saw a connection error: the retry replays."""
        calls: list[int] = []
        failed: list[int] = []

        def fn(uow: UnitOfWork) -> Replay:
            if not failed:
                failed.append(1)

                def lost_ack() -> None:
                    raise _dbapi_error(
                        _Orig("server closed the connection unexpectedly")
                    )

                uow.after_commit(lost_ack)
            return _create_once("amb-1", "Once", calls)(uow)

        result = run_tx(fn, db=db, sleep=lambda _d: None)
        assert result.replayed
        assert calls == [1]
        assert count(db, Project) == 1
        assert len(audit_rows(db)) == 1


def load_all(db: DB) -> list[Project]:
    with db.session() as session:
        return list(session.query(Project).order_by(Project.name))


class TestRunTxAsync:
    @pytest.mark.anyio
    async def test_commit_and_after_commit(self, db: DB) -> None:
        ctx = WriteContext(user_id=uuid.uuid4(), correlation_id="async-1")
        seen: list[str] = []

        def fn(uow: UnitOfWork) -> str:
            project = uow.repo(Project).create(name="Async")
            uow.repo(Project).update(project.id, priority=7)
            uow.after_commit(lambda: seen.append("committed"))
            return str(project.id)

        try:
            pid = await run_tx_async(fn, db=db, ctx=ctx)
        finally:
            await db.adispose()
        assert seen == ["committed"]
        row = load(db, Project, uuid.UUID(pid))
        assert (row.name, row.priority, row.version) == ("Async", 7, 2)
        audits = audit_rows(db, pid)
        assert [a.action for a in audits] == ["create", "update"]
        assert all(
            a.correlation_id == "async-1" and a.user_id == ctx.user_id for a in audits
        )

    @pytest.mark.anyio
    async def test_retries_and_idempotency(self, db: DB) -> None:
        delays: list[float] = []
        attempts: list[int] = []
        calls: list[int] = []

        async def fake_sleep(delay: float) -> None:
            delays.append(delay)

        def fn(uow: UnitOfWork) -> Replay:
            attempts.append(1)
            result: Replay = _create_once("async-w", "A", calls)(uow)
            if len(attempts) < 3:
                raise TransientError("flaky")
            return result

        try:
            first = await run_tx_async(fn, db=db, sleep=fake_sleep)
            again = await run_tx_async(_create_once("async-w", "A", calls), db=db)
        finally:
            await db.adispose()
        assert len(attempts) == 3
        assert len(delays) == 2
        assert calls == [1, 1, 1]  # rolled back twice, committed once
        assert not first.replayed
        assert again.replayed
        assert first.response == again.response
        assert count(db, Project) == 1
        assert len(audit_rows(db)) == 1

    @pytest.mark.anyio
    async def test_non_transient_and_exhausted(self, db: DB) -> None:
        attempts: list[int] = []

        async def no_sleep(_delay: float) -> None:
            return None

        def broken(uow: UnitOfWork) -> None:
            attempts.append(1)
            uow.repo(Project).create(name="x")
            raise ValueError("bug")

        def down(_uow: UnitOfWork) -> None:
            attempts.append(1)
            raise TransientError("down")

        try:
            with pytest.raises(ValueError, match="bug"):
                await run_tx_async(broken, db=db, sleep=no_sleep)
            assert len(attempts) == 1
            with pytest.raises(TransientError):
                await run_tx_async(down, db=db, attempts=2, sleep=no_sleep)
            assert len(attempts) == 3
        finally:
            await db.adispose()
        assert count(db, Project) == 0

    @pytest.mark.anyio
    async def test_default_db_and_default_sleep(self, db: DB) -> None:
        init_db(db)
        attempts: list[int] = []

        def fn(uow: UnitOfWork) -> int:
            attempts.append(1)
            if len(attempts) == 1:
                raise TransientError("once")
            uow.repo(Project).create(name="d")
            return len(attempts)

        try:
            assert await run_tx_async(fn) == 2
        finally:
            await db.adispose()
            reset_db()
        assert count(db, Project) == 1


def test_failed_rollback_does_not_hide_the_error(db: DB) -> None:
    """A rollback that fails too (dead connection) still drops callbacks and re-raises."""
    seen: list[str] = []

    def fn(uow: UnitOfWork) -> None:
        def broken_rollback() -> None:
            raise OperationalError("ROLLBACK", {}, _Orig("connection is closed"))

        uow.session.rollback = broken_rollback  # type: ignore[method-assign]
        uow.after_commit(lambda: seen.append("x"))
        raise ValueError("original")

    with pytest.raises(ValueError, match="original"):
        run_tx(fn, db=db)
    assert seen == []


def test_jsonable() -> None:
    from decimal import Decimal

    from ballast_common.db import jsonable

    value = {
        "u": uuid.UUID(int=5),
        "d": datetime(2024, 1, 2, tzinfo=UTC),
        "n": Decimal("1.50"),
        "s": {1},
        "t": (None, True, 2.5),
    }
    assert jsonable(value) == {
        "u": str(uuid.UUID(int=5)),
        "d": "2024-01-02T00:00:00+00:00",
        "n": "1.50",
        "s": [1],
        "t": [None, True, 2.5],
    }
