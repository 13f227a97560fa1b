"""Fault tests on a private PostgreSQL server: connections that die mid-transaction.

A write whose connection dies before COMMIT leaves nothing behind (PostgreSQL rolls the
transaction back); `run_tx` classifies the error as transient and retries the whole
function, and the write id makes the retry apply exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from ballast_common.db import DB, Replay, UnitOfWork, is_transient, migrate, run_tx
from ballast_common.models import AuditLog, Project, WriteRecord
from ballast_testing.servers import LocalPostgres

from .helpers import audit_rows, count, write_records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def server(private_postgres: Callable[..., LocalPostgres]) -> LocalPostgres:
    return private_postgres()


@pytest.fixture
def fault_db(server: LocalPostgres) -> Iterator[DB]:
    url = server.create_database("ballast_faults")
    db = DB(url, pool_timeout=5)
    migrate(db=db)
    try:
        yield db
    finally:
        db.dispose()


def _create(
    write_id: str, on_first_attempt: Callable[[UnitOfWork], None]
) -> Callable[[UnitOfWork], Replay]:
    attempts: list[int] = []

    def fn(uow: UnitOfWork) -> Replay:
        attempts.append(1)

        def work() -> tuple[int, dict[str, Any]]:
            project = uow.repo(Project).create(name="Exactly once")
            return 201, {"id": str(project.id)}

        result = uow.idempotent(
            write_id, "create_project", {"name": "Exactly once"}, work
        )
        if len(attempts) == 1:
            # The writes are on the server, uncommitted, when the connection dies.
            uow.flush()
            on_first_attempt(uow)
        return result

    fn.attempts = attempts  # type: ignore[attr-defined]
    return fn


def _assert_exactly_once(db: DB, write_id: str, result: Replay) -> None:
    assert count(db, Project) == 1
    assert count(db, AuditLog) == 1
    assert count(db, WriteRecord) == 1
    [record] = write_records(db)
    assert record.write_id == write_id
    assert record.response == result.response
    [audit] = audit_rows(db)
    assert audit.write_id == write_id
    assert audit.resource_id == result.response["id"]


def test_backend_terminated_mid_transaction(
    server: LocalPostgres, fault_db: DB
) -> None:
    def terminate_own_backend(uow: UnitOfWork) -> None:
        pid = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # Another connection sees none of the uncommitted writes.
        assert count(fault_db, Project) == 0
        with server.connect() as admin:
            row = admin.execute(
                "SELECT pg_terminate_backend(%s, 5000)", (pid,)
            ).fetchone()
            assert row == (True,)

    fn = _create("fault-1", terminate_own_backend)
    delays: list[float] = []
    result = run_tx(fn, db=fault_db, attempts=5, sleep=delays.append)

    assert len(fn.attempts) == 2  # type: ignore[attr-defined]
    assert len(delays) == 1
    assert not result.replayed
    _assert_exactly_once(fault_db, "fault-1", result)
    # A later duplicate replays the stored outcome.
    again = run_tx(_create("fault-1", lambda _uow: None), db=fault_db)
    assert again.replayed
    assert again.response == result.response
    assert count(fault_db, Project) == 1


def test_postmaster_killed_mid_transaction(server: LocalPostgres, fault_db: DB) -> None:
    restarted = threading.Event()
    restart_errors: list[BaseException] = []

    def restart() -> None:
        try:
            time.sleep(0.3)
            server.start()
        except BaseException as exc:  # pragma: no cover - reported below
            restart_errors.append(exc)
        finally:
            restarted.set()

    def crash_server(_uow: UnitOfWork) -> None:
        server.kill()
        assert not server.running
        threading.Thread(target=restart, daemon=True).start()

    delays: list[float] = []

    def sleep(delay: float) -> None:
        delays.append(delay)
        time.sleep(max(delay, 0.2))

    fn = _create("fault-2", crash_server)
    result = run_tx(fn, db=fault_db, attempts=60, sleep=sleep)

    assert restarted.wait(30)
    assert restart_errors == []
    assert server.running
    assert len(fn.attempts) >= 2  # type: ignore[attr-defined]
    assert len(delays) == len(fn.attempts) - 1  # type: ignore[attr-defined]
    assert not result.replayed
    _assert_exactly_once(fault_db, "fault-2", result)
    assert fault_db.health_check()


def test_server_down_exhausts_attempts(server: LocalPostgres, fault_db: DB) -> None:
    server.stop()
    delays: list[float] = []
    with pytest.raises(OperationalError) as info:
        run_tx(
            _create("fault-3", lambda _uow: None),
            db=fault_db,
            attempts=3,
            sleep=delays.append,
        )
    assert is_transient(info.value)
    assert len(delays) == 2
    server.start()
    result = run_tx(
        _create("fault-3", lambda _uow: None), db=fault_db, sleep=delays.append
    )
    assert not result.replayed
    _assert_exactly_once(fault_db, "fault-3", result)
