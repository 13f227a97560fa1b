"""`migrate()`: bring a database to the newest (or a given) schema revision.

On PostgreSQL a migration must never hold up the live colour. A DDL statement waiting
for a table lock makes every later query on that table queue behind it, so migrations
wait at most ``lock_timeout_s`` for a lock, then roll back, back off (the queue drains)
and try again, up to ``lock_attempts`` times. Each migration file runs in its own
transaction under a session advisory lock (two runners never migrate at once), so a
migration can run statements that refuse a transaction, such as
``CREATE INDEX CONCURRENTLY``, in ``op.get_context().autocommit_block()``.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from ballast_common.db.engine import DB, get_db
from ballast_common.telemetry import get_logger

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
VERSIONS = ALEMBIC_INI.parent / "migrations" / "versions"
# Session advisory lock key: one migration runner per database at a time.
MIGRATION_LOCK_KEY = 74657
# PostgreSQL's lock_not_available: a statement gave up at lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"
_BACKOFF_MAX_S = 15.0

log = get_logger(__name__)


class MigrationLockTimeout(RuntimeError):
    """A migration could not get a table lock within its attempts."""


def alembic_config(
    db: DB | None = None, *, extra_versions: Path | None = None
) -> Config:
    """An Alembic Config for `db` (default: the process default database).

    ``extra_versions`` adds a directory of revisions after the shipped ones.
    """
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(ALEMBIC_INI.parent / "migrations"))
    if extra_versions is not None:
        # Separated as `path_separator = os` below says.
        cfg.set_main_option(
            "version_locations", os.pathsep.join((str(VERSIONS), str(extra_versions)))
        )
    # Without it Alembic >= 1.16 warns (DeprecationWarning) on every command that reads
    # prepend_sys_path, which fails any caller running with warnings as errors.
    cfg.set_main_option("path_separator", "os")
    if db is not None:
        cfg.set_main_option(
            "sqlalchemy.url",
            db.url.render_as_string(hide_password=False).replace("%", "%%"),
        )
    return cfg


def _run(
    db: DB | None, fn: str, revision: str, *, extra_versions: Path | None = None
) -> None:
    """Alembic `command.<fn>(revision)` in one transaction on `db`."""
    database = db or get_db()
    cfg = alembic_config(database, extra_versions=extra_versions)
    with database.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, fn)(cfg, revision)


def migrate(
    revision: str = "head",
    *,
    db: DB | None = None,
    lock_timeout_s: float = 5.0,
    lock_attempts: int = 12,
    statement_timeout_s: float = 60.0,
    extra_versions: Path | None = None,
) -> str | None:
    """Upgrade to `revision` (default: head). Safe to run repeatedly and concurrently.

    On PostgreSQL each statement waits at most ``lock_timeout_s`` for a lock and runs
    at most ``statement_timeout_s`` (0: no limit); a migration that gave up waiting is
    retried with backoff, ``lock_attempts`` times in all.

    Returns:
        The revision the database is at afterwards.

    Raises:
        MigrationLockTimeout: A lock was busy on every attempt; the migration that
            waited for it was rolled back (earlier ones stay applied).
    """
    database = db or get_db()
    if database.is_sqlite:
        _run(database, "upgrade", revision, extra_versions=extra_versions)
        return current_revision(database)
    cfg = alembic_config(database, extra_versions=extra_versions)
    with database.engine.connect() as conn:
        try:
            _session_setup(conn, lock_timeout_s, statement_timeout_s)
            cfg.attributes["connection"] = conn
            cfg.attributes["transaction_per_migration"] = True
            _upgrade_with_retries(cfg, conn, revision, lock_timeout_s, lock_attempts)
        finally:
            # Session settings and the advisory lock go with the connection: it is
            # closed, never handed back to the pool.
            conn.invalidate()
    return current_revision(database)


def _session_setup(conn: Connection, lock_timeout_s: float, statement_s: float) -> None:
    # First wait for another runner (a second hook Job, `ballast app run`), for as long
    # as it takes: lock_timeout is set after, for the migrations' table locks.
    conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
    conn.exec_driver_sql(f"SET lock_timeout = {max(1, round(lock_timeout_s * 1000))}")
    conn.exec_driver_sql(f"SET statement_timeout = {round(statement_s * 1000)}")
    conn.commit()


def _lock_busy(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE


def _upgrade_with_retries(
    cfg: Config, conn: Connection, revision: str, lock_timeout_s: float, attempts: int
) -> None:
    for attempt in range(1, attempts + 1):
        try:
            command.upgrade(cfg, revision)
            return
        except DBAPIError as exc:
            if not _lock_busy(exc):
                raise
            conn.rollback()
            if attempt == attempts:
                raise MigrationLockTimeout(
                    f"a table lock stayed busy for {attempts} attempts of "
                    f"{lock_timeout_s:g} s (lock_timeout): a long transaction holds a "
                    "table this migration changes. The migration was rolled back; "
                    "run it again when the long transaction is over"
                ) from exc
            jitter = random.uniform(0.5, 1.0)  # noqa: S311 - not a secret
            pause = min(_BACKOFF_MAX_S, 0.25 * 2**attempt) * jitter
            log.warning(
                "migration_lock_busy",
                attempt=attempt,
                attempts=attempts,
                retry_in_s=round(pause, 2),
            )
            time.sleep(pause)


def downgrade(revision: str, *, db: DB | None = None) -> str | None:
    """Downgrade to `revision` ("base" empties the schema)."""
    _run(db, "downgrade", revision)
    return current_revision(db or get_db())


def current_revision(db: DB | None = None) -> str | None:
    """The revision stamped in the database, or None for an empty one."""
    with (db or get_db()).engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision in the migration scripts."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def pending(db: DB | None = None) -> bool:
    """Whether the database is behind the scripts."""
    return current_revision(db) != head_revision()
