"""`migrate()`: bring a database to the newest (or a given) schema revision.

On PostgreSQL a migration must never hold up the live colour. A DDL statement waiting
for a table lock makes every later query on that table queue behind it, so migrations
wait at most ``lock_timeout_s`` for a lock, then roll back, back off (the queue drains)
and try again, up to ``lock_attempts`` times. Each migration file runs in its own
transaction under a session advisory lock (two runners never migrate at once), so a
migration can run statements that refuse a transaction, such as
``CREATE INDEX CONCURRENTLY``, in ``op.get_context().autocommit_block()``.

After an upgrade the revisions of the script directory up to the database's revision are
recorded in ``schema_lineage`` (parent and contract flag), so that an older release that
meets a revision it has never heard of can tell (``schema_status``) a newer release's
expand-only schema, which it may run on, from a contracted or foreign one, which it must not.
A migration that contracts the schema says so with ``contract = True`` in its file.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from ballast_common.db.engine import DB, get_db
from ballast_common.models.base import utcnow
from ballast_common.models.schema import SchemaLineage
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
        cfg = alembic_config(database, extra_versions=extra_versions)
        with database.engine.begin() as conn:
            record_lineage(conn, ScriptDirectory.from_config(cfg))
        return current_revision(database)
    cfg = alembic_config(database, extra_versions=extra_versions)
    with database.engine.connect() as conn:
        try:
            _session_setup(conn, lock_timeout_s, statement_timeout_s)
            cfg.attributes["connection"] = conn
            cfg.attributes["transaction_per_migration"] = True
            _upgrade_with_retries(cfg, conn, revision, lock_timeout_s, lock_attempts)
            record_lineage(conn, ScriptDirectory.from_config(cfg))
            conn.commit()
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


def _parents(down_revision: str | Iterable[str] | None) -> tuple[str, ...]:
    if down_revision is None:
        return ()
    if isinstance(down_revision, str):
        return (down_revision,)
    return tuple(down_revision)


def record_lineage(conn: Connection, script: ScriptDirectory) -> int:
    """Record the revisions of `script` up to the database's revision in ``schema_lineage``.

    Rows already there are kept (a revision's parent never changes). Nothing happens
    while the table does not exist yet (a database migrated to an earlier revision).

    Returns:
        The number of revisions offered.
    """
    current = MigrationContext.configure(conn).get_current_revision()
    if current is None or not inspect(conn).has_table(SchemaLineage.__tablename__):
        return 0
    try:
        revisions = list(script.walk_revisions(base="base", head=current))
    except CommandError:
        return 0  # the database is at a revision this script directory does not know
    rows = [
        {
            "revision": rev.revision,
            "down_revision": ",".join(_parents(rev.down_revision)) or None,
            "contract": bool(getattr(rev.module, "contract", False)),
            "recorded_at": utcnow(),
        }
        for rev in revisions
    ]
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(SchemaLineage)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["revision"])
    )
    return len(rows)


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database's schema stands for this release's code.

    state: ``ready`` (at this release's head, or at a newer release's revision that
    descends from it by expand-only migrations), ``behind`` (empty, or at an older
    revision of this release: the migration has not run yet), ``unknown`` (a revision
    this release does not know and cannot place after its head) or ``contracted`` (a
    newer release contracted the schema after this release's head).
    """

    state: str
    current: str | None
    head: str | None
    detail: str

    @property
    def runnable(self) -> bool:
        return self.state == "ready"

    @property
    def final(self) -> bool:
        """Waiting cannot change it: only a migration of this release or an operator can."""
        return self.state in ("unknown", "contracted")


def schema_status(db: DB, script: ScriptDirectory | None = None) -> SchemaStatus:
    """Compare the database's revision with this release's head (see `SchemaStatus`).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
    """
    script = script or ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return SchemaStatus(
                "ready", current, head, f"at this release's head {head}"
            )
        if current is None:
            return SchemaStatus("behind", None, head, "no schema yet")
        if _known(script, current):
            return SchemaStatus(
                "behind",
                current,
                head,
                f"at {current}, before this release's head {head}",
            )
        lineage: dict[str, tuple[str | None, bool]] = {}
        if inspect(conn).has_table(SchemaLineage.__tablename__):
            query = select(
                SchemaLineage.revision,
                SchemaLineage.down_revision,
                SchemaLineage.contract,
            )
            lineage = {
                rev: (down, contract) for rev, down, contract in conn.execute(query)
            }
    return _place_newer(script, current, head, lineage)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _place_newer(
    script: ScriptDirectory,
    current: str,
    head: str | None,
    lineage: dict[str, tuple[str | None, bool]],
) -> SchemaStatus:
    """Walk the recorded parents of `current` back to revisions this release knows."""
    newer: list[str] = []
    reached_head = False
    todo, seen = [current], set()
    while todo:
        rev = todo.pop()
        if rev in seen:
            continue
        seen.add(rev)
        if _known(script, rev):
            reached_head = reached_head or rev == head
            continue
        if rev not in lineage:
            return SchemaStatus(
                "unknown",
                current,
                head,
                f"the database is at revision {current}, which this release (head {head}) "
                f"does not know, and no release recorded where {rev} comes from "
                "(schema_lineage): it is not a known successor of this release. Deploy the "
                "release that wrote it, or restore a backup taken by this release",
            )
        newer.append(rev)
        down = lineage[rev][0]
        todo.extend(down.split(",") if down else ())
    if not reached_head:
        return SchemaStatus(
            "unknown",
            current,
            head,
            f"the database is at revision {current}, which does not descend from this "
            f"release's head {head} (another branch of the migrations): refusing to run "
            "this release on it",
        )
    contracted = sorted(r for r in newer if lineage[r][1])
    if contracted:
        return SchemaStatus(
            "contracted",
            current,
            head,
            f"the database is at revision {current}, and a newer release contracted the "
            f"schema after this release's head {head} ({', '.join(contracted)}): this "
            "release's code may use what was removed. Run the newer release",
        )
    return SchemaStatus(
        "ready",
        current,
        head,
        f"at {current}, a newer release's revision that follows this release's head "
        f"{head} by expand-only migrations ({len(newer)} newer)",
    )
