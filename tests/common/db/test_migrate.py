"""Migrations: empty -> head -> base -> head on both databases, and no model/migration drift."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from ballast_common.db import (
    DB,
    current_revision,
    downgrade,
    head_revision,
    init_db,
    migrate,
    reset_db,
)
from ballast_common.db.migrate import alembic_config, pending
from ballast_common.models import Model
from ballast_testing.servers import PostgresServer

from .conftest import BACKENDS

TABLES = {t.name for t in Model.metadata.sorted_tables}


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DB]:
    """A database with no schema at all (a new SQLite file or a new PostgreSQL database)."""
    if request.param == "sqlite":
        db = DB(f"sqlite:///{tmp_path}/empty.db")
        try:
            yield db
        finally:
            db.dispose()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"ballast_mig_{secrets.token_hex(5)}"
    db = DB(server.create_database(name))
    try:
        yield db
    finally:
        db.dispose()
        server.drop_database(name)


def _tables(db: DB) -> set[str]:
    with db.connect() as conn:
        return set(inspect(conn).get_table_names())


def _diff(db: DB) -> list[Any]:
    """Autogenerate's view of model vs database, with the options env.py uses."""
    with db.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Model.metadata))


class TestMigrate:
    def test_round_trip(self, empty_db: DB) -> None:
        head = head_revision()
        assert head is not None
        assert current_revision(empty_db) is None
        assert pending(empty_db)
        assert not TABLES & _tables(empty_db)

        assert migrate(db=empty_db) == head
        assert _tables(empty_db) >= TABLES
        assert not pending(empty_db)
        # Running again is a no-op.
        assert migrate(db=empty_db) == head

        assert downgrade("base", db=empty_db) is None
        assert _tables(empty_db) <= {"alembic_version"}
        assert current_revision(empty_db) is None

        assert migrate(db=empty_db) == head
        assert _tables(empty_db) >= TABLES
        assert current_revision(empty_db) == head

    def test_models_match_migrations(self, empty_db: DB) -> None:
        migrate(db=empty_db)
        assert _diff(empty_db) == []

    def test_drift_is_detected(self, empty_db: DB) -> None:
        """The comparison is not vacuous: a missing table shows up."""
        migrate(db=empty_db)
        with empty_db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE events")
        diff = _diff(empty_db)
        assert any(d[0] == "add_table" and d[1].name == "events" for d in diff)

    def test_default_db(self, empty_db: DB) -> None:
        init_db(empty_db)
        try:
            assert migrate() == head_revision()
            assert current_revision() == head_revision()
            assert downgrade("base") is None
        finally:
            reset_db()

    def test_alembic_config_keeps_percent_in_password(self) -> None:
        db = DB("postgresql://user:p%25ss@127.0.0.1:1/x")
        try:
            cfg = alembic_config(db)
            assert (
                cfg.get_main_option("sqlalchemy.url")
                == "postgresql+psycopg://user:p%25ss@127.0.0.1:1/x"
            )
        finally:
            db.dispose()
