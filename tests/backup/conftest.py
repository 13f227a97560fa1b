"""Backups against real databases: SQLite files and throwaway PostgreSQL databases."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ballast_backup.core import Backups
from ballast_common.config import AppConfig, load_config
from ballast_common.db.engine import DB
from ballast_common.db.migrate import migrate
from ballast_common.storage import LocalObjectStore, ObjectStore
from ballast_testing.servers import PostgresServer


@dataclass
class Env:
    """One source database, its config and a backup store."""

    backend: str
    config: AppConfig
    db: DB
    store: ObjectStore
    drop: Callable[[], None]

    def backups(
        self, store: ObjectStore | None = None, *, restore_jobs: int | None = None
    ) -> Backups:
        config = self.config
        if restore_jobs is not None:
            backup = config.backup.model_copy(update={"restore_jobs": restore_jobs})
            config = config.model_copy(update={"backup": backup})
        return Backups.from_config(config, store=store or self.store)


def _sqlite_env(tmp_path: Path) -> Iterator[Env]:
    path = tmp_path / "live.db"
    cfg = load_config(
        database={"url": f"sqlite:///{path}"}, paths={"data_dir": str(tmp_path)}
    )
    db = DB(cfg.database.url_with_password())
    migrate(db=db)

    def drop() -> None:
        db.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    yield Env("sqlite", cfg, db, LocalObjectStore(tmp_path / "objects"), drop)
    db.dispose()


def _pg_env(server: PostgresServer, tmp_path: Path) -> Iterator[Env]:
    name = f"ballast_bk_{secrets.token_hex(4)}"
    url = server.create_database(name)
    cfg = load_config(database={"url": url}, paths={"data_dir": str(tmp_path)})
    db = DB(cfg.database.url_with_password())
    migrate(db=db)

    def drop() -> None:
        db.dispose()
        server.drop_database(name)

    try:
        yield Env("postgresql", cfg, db, LocalObjectStore(tmp_path / "objects"), drop)
    finally:
        db.dispose()
        with server.connect() as conn:
            leftovers = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (name + "%",),
                )
            ]
        for other in leftovers:
            server.drop_database(other)


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Iterator[Env]:
    yield from _sqlite_env(tmp_path)


@pytest.fixture
def pg_env(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Env]:
    yield from _pg_env(postgres_server, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if request.param == "sqlite":
        yield from _sqlite_env(tmp_path)
    else:
        yield from _pg_env(request.getfixturevalue("postgres_server"), tmp_path)
