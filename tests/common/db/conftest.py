"""Fixtures for the database layer: the same tests on SQLite (a file) and PostgreSQL.

`db` is parametrised over both backends. SQLite gets a fresh file per test; PostgreSQL
gets one database per test module, migrated once with `migrate()`, and every table is
truncated before each test (much faster than a new database or a downgrade per test).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from ballast_common.db import DB, migrate, reset_db
from ballast_common.models import Model
from ballast_testing.servers import PostgresServer

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
]


def _truncate_all(db: DB) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Model.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="module")
def pg_module_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A PostgreSQL database for this test module, migrated to head once."""
    name = f"ballast_db_{secrets.token_hex(5)}"
    url = postgres_server.create_database(name)
    db = DB(url)
    try:
        migrate(db=db)
    finally:
        db.dispose()
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


def make_sqlite_db(path: str) -> DB:
    db = DB(f"sqlite:///{path}")
    migrate(db=db)
    return db


@pytest.fixture(params=BACKENDS)
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DB]:
    """A database at head with no rows: SQLite (file in tmp) or PostgreSQL."""
    if request.param == "sqlite":
        database = make_sqlite_db(str(tmp_path_factory.mktemp("sqlite") / "ballast.db"))
    else:
        url: str = request.getfixturevalue("pg_module_url")
        database = DB(url)
        _truncate_all(database)
    try:
        yield database
    finally:
        reset_db()
        database.dispose()


@pytest.fixture
def pg_db(pg_module_url: str) -> Iterator[DB]:
    """PostgreSQL only (tests of behaviour SQLite cannot show, e.g. row-lock races)."""
    database = DB(pg_module_url)
    _truncate_all(database)
    try:
        yield database
    finally:
        reset_db()
        database.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
