"""`migrate()`: bring a database to the newest (or a given) schema revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ballast_common.db.engine import DB, get_db

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(db: DB | None = None) -> Config:
    """An Alembic Config for `db` (default: the process default database)."""
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(ALEMBIC_INI.parent / "migrations"))
    # Without it Alembic >= 1.16 warns (DeprecationWarning) on every command that reads
    # prepend_sys_path, which fails any caller running with warnings as errors.
    cfg.set_main_option("path_separator", "os")
    if db is not None:
        cfg.set_main_option(
            "sqlalchemy.url",
            db.url.render_as_string(hide_password=False).replace("%", "%%"),
        )
    return cfg


def _run(db: DB | None, fn: str, revision: str) -> None:
    database = db or get_db()
    cfg = alembic_config(database)
    with database.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, fn)(cfg, revision)


def migrate(revision: str = "head", *, db: DB | None = None) -> str | None:
    """Upgrade to `revision` (default: head). Safe to run repeatedly and concurrently
    on PostgreSQL (a transaction-level advisory lock serialises runners).

    Returns:
        The revision the database is at afterwards.
    """
    database = db or get_db()
    if database.is_sqlite:
        _run(database, "upgrade", revision)
    else:
        cfg = alembic_config(database)
        with database.engine.begin() as conn:
            # Two hook Jobs (or a Job and `ballast app run`) must not migrate at once.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74657) ")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    return current_revision(database)


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
