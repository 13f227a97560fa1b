"""Migrations on PostgreSQL never queue in front of the live colour's queries.

A DDL statement waiting for a table lock makes every later query on that table wait
behind it. Migrations therefore wait at most ``lock_timeout_s`` for a lock, back off
(letting the queue drain) and try again, and give up with a clear error after
``lock_attempts``. Each migration file runs in its own transaction under a session
advisory lock, so a migration may also run statements outside a transaction
(``CREATE INDEX CONCURRENTLY`` in an ``autocommit_block``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from ballast_common.db import DB, migrate
from ballast_common.db.migrate import MigrationLockTimeout, current_revision, downgrade
from ballast_testing.servers import PostgresServer

pytestmark = pytest.mark.integration

# 0002 adds foreign keys to users: it needs a SHARE ROW EXCLUSIVE lock there, which
# an open transaction that wrote a user holds off.
BEFORE = "0001_initial"


@pytest.fixture
def behind(postgres_server: PostgresServer) -> Iterator[tuple[DB, str]]:
    """A database one revision behind head, and its libpq URL."""
    name = f"ballast_mig_{secrets.token_hex(5)}"
    url = postgres_server.create_database(name)
    db = DB(url)
    migrate(db=db)
    downgrade(BEFORE, db=db)
    try:
        yield db, url.replace("postgresql+psycopg://", "postgresql://")
    finally:
        db.dispose()
        postgres_server.drop_database(name)


def _writer(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, connect_timeout=5)
    conn.execute("UPDATE users SET display_name = display_name")
    return conn  # in an open transaction holding ROW EXCLUSIVE on users


def test_a_blocked_migration_gives_up_and_lets_the_live_colour_write(
    behind: tuple[DB, str],
) -> None:
    db, url = behind
    holder = _writer(url)  # a long transaction of the live colour
    try:
        with ThreadPoolExecutor(1) as pool:
            migrating = pool.submit(migrate, db=db, lock_timeout_s=0.3, lock_attempts=3)
            # Another live write while the migration waits: it must not queue behind
            # the migration's lock request until the long transaction ends.
            with psycopg.connect(url, connect_timeout=5, autocommit=True) as live:
                live.execute("SET statement_timeout = '30s'")
                live.execute("UPDATE users SET display_name = display_name")
            with pytest.raises(MigrationLockTimeout) as caught:
                migrating.result(timeout=60)
        message = str(caught.value)
        assert "lock" in message
        assert "3 attempts" in message
        assert current_revision(db) == BEFORE  # the blocked migration left nothing
    finally:
        holder.rollback()
        holder.close()


def test_a_migration_goes_on_once_the_lock_is_free(behind: tuple[DB, str]) -> None:
    db, url = behind
    holder = _writer(url)
    started = threading.Event()

    def run() -> str | None:
        started.set()
        return migrate(db=db, lock_timeout_s=0.2, lock_attempts=50)

    with ThreadPoolExecutor(1) as pool:
        migrating: Future[str | None] = pool.submit(run)
        started.wait(10)
        holder.rollback()
        holder.close()
        assert migrating.result(timeout=120) != BEFORE
    assert current_revision(db) != BEFORE


def test_settings_do_not_leak_into_the_pool(behind: tuple[DB, str]) -> None:
    db, _ = behind
    migrate(db=db, lock_timeout_s=0.7, lock_attempts=2)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
        held = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ).scalar()
    assert held == 0


CONCURRENT_INDEX = '''
"""A migration building an index without blocking writes."""
from alembic import op

revision = "0099_concurrent_index"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_users_display_name_test",
            "users",
            ["display_name"],
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_users_display_name_test", "users", postgresql_concurrently=True
        )
'''


def test_a_migration_may_build_an_index_concurrently(
    behind: tuple[DB, str], tmp_path: Path
) -> None:
    db, _ = behind
    head = migrate(db=db)
    (tmp_path / "0099_concurrent_index.py").write_text(
        CONCURRENT_INDEX.format(down=head)
    )
    assert migrate(db=db, extra_versions=tmp_path) == "0099_concurrent_index"
    with db.engine.connect() as conn:
        valid = conn.exec_driver_sql(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = 'ix_users_display_name_test'"
        ).scalar()
    assert valid is True


def test_the_cli_takes_the_limits_from_the_settings_and_says_what_blocked(
    behind: tuple[DB, str],
) -> None:
    db, url = behind
    holder = _writer(url)
    try:
        env = {
            **os.environ,  # noqa: TID251 - the CLI child needs this environment
            "BALLAST_DATABASE__URL": db.url.render_as_string(hide_password=False),
            "BALLAST_DATABASE__MIGRATION_LOCK_TIMEOUT_S": "0.2",
            "BALLAST_DATABASE__MIGRATION_LOCK_ATTEMPTS": "2",
        }
        run = subprocess.run(
            [str(Path(sys.executable).with_name("ballast")), "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        holder.rollback()
        holder.close()
    assert run.returncode != 0
    (line,) = run.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: migration failed: MigrationLockTimeout")
    assert "2 attempts of 0.2 s" in line
    assert current_revision(db) == BEFORE
