"""`DB`, `get_conn`, the process default, health checks, pool stats and SQLite pragmas."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from ballast_common.config import DatabaseConfig
from ballast_common.db import DB, get_conn, get_db, init_db, normalize_url, reset_db
from ballast_common.errors import ConfigError
from ballast_testing.servers import LocalPostgres


class TestNormalizeUrl:
    @pytest.mark.parametrize(
        ("raw", "use_async", "driver"),
        [
            ("sqlite:///x.db", False, "sqlite+pysqlite"),
            ("sqlite:///x.db", True, "sqlite+aiosqlite"),
            ("postgresql://u@h/d", False, "postgresql+psycopg"),
            ("postgres://u@h/d", True, "postgresql+asyncpg"),
            ("postgresql+asyncpg://u@h/d", False, "postgresql+psycopg"),
        ],
    )
    def test_driver(self, raw: str, use_async: bool, driver: str) -> None:
        assert normalize_url(raw, use_async=use_async).drivername == driver

    def test_unsupported_backend(self) -> None:
        with pytest.raises(ConfigError, match="unsupported database"):
            normalize_url("mysql://u@h/d")


class TestDefaultDb:
    def test_get_db_without_init(self) -> None:
        reset_db()
        with pytest.raises(ConfigError, match="no database configured"):
            get_db()

    def test_init_get_reset(self, db: DB) -> None:
        assert init_db(db) is db
        assert get_db() is db
        with get_conn() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        reset_db()
        with pytest.raises(ConfigError):
            get_db()
        reset_db()  # twice is fine

    def test_init_from_config(self, tmp_path: Path) -> None:
        cfg = DatabaseConfig(url=f"sqlite:///{tmp_path}/sub/dir/app.db", tx_retries=7)
        db = init_db(cfg, application_name="tests")
        try:
            assert get_db() is db
            assert db.tx_retries == 7
            assert db.is_sqlite
            # The parent directory of the file is created.
            assert (tmp_path / "sub" / "dir").is_dir()
            assert "app.db" in repr(db)
        finally:
            reset_db()

    def test_get_conn_explicit_db(self, db: DB) -> None:
        with get_conn(db) as conn:
            assert conn.execute(text("SELECT 2")).scalar_one() == 2


class TestHealthAndPool:
    def test_health_check_live(self, db: DB) -> None:
        assert db.health_check() is True

    @pytest.mark.anyio
    async def test_async_health_check_live(self, db: DB) -> None:
        try:
            assert await db.ahealth_check() is True
        finally:
            await db.adispose()

    def test_pool_stats_keys(self, db: DB) -> None:
        with db.connect() as conn:
            conn.execute(text("SELECT 1"))
            stats = db.pool_stats()
            assert set(stats) == {"checked_out", "idle", "overflow", "size"}
            assert stats["checked_out"] == 1
            assert all(isinstance(v, int) and v >= 0 for v in stats.values())
        assert db.pool_stats()["checked_out"] == 0
        assert db.pool_stats()["idle"] >= 1

    def test_pool_stats_include_async_engine(self, db: DB) -> None:
        assert db.async_engine is db.async_engine  # created once
        stats = db.pool_stats()
        assert stats["checked_out"] == 0
        db.dispose()

    def test_health_check_unreachable_sqlite(self, tmp_path: Path) -> None:
        # A directory cannot be opened as a database file.
        (tmp_path / "d.db").mkdir()
        db = DB(f"sqlite:///{tmp_path}/d.db")
        try:
            assert db.health_check() is False
        finally:
            db.dispose()

    @pytest.mark.integration
    def test_health_check_stopped_server(
        self, private_postgres: Callable[..., LocalPostgres]
    ) -> None:
        server = private_postgres()
        db = DB(server.admin_url, pool_timeout=2)
        try:
            assert db.health_check() is True
            server.stop()
            assert db.health_check() is False
            server.start()
            assert db.health_check() is True
        finally:
            db.dispose()

    @pytest.mark.integration
    @pytest.mark.anyio
    async def test_async_health_check_stopped_server(
        self, private_postgres: Callable[..., LocalPostgres]
    ) -> None:
        server = private_postgres()
        db = DB(server.admin_url)
        try:
            server.stop()
            assert await db.ahealth_check() is False
        finally:
            await db.adispose()

    @pytest.mark.integration
    def test_postgres_connect_options(self, pg_db: DB) -> None:
        db = DB(pg_db.url, statement_timeout_ms=1234, application_name="ballast-tests")
        try:
            with db.connect() as conn:
                assert (
                    conn.execute(text("SHOW statement_timeout")).scalar_one()
                    == "1234ms"
                )
                assert (
                    conn.execute(text("SHOW application_name")).scalar_one()
                    == "ballast-tests"
                )
        finally:
            db.dispose()

    @pytest.mark.integration
    @pytest.mark.anyio
    async def test_postgres_async_connect_options(self, pg_db: DB) -> None:
        db = DB(pg_db.url, statement_timeout_ms=1500, application_name="ballast-async")
        try:
            async with db.async_engine.connect() as conn:
                assert (
                    await conn.execute(text("SHOW statement_timeout"))
                ).scalar_one() == "1500ms"
                assert (
                    await conn.execute(text("SHOW application_name"))
                ).scalar_one() == "ballast-async"
        finally:
            await db.adispose()


class TestSqlitePragmas:
    def _db(self, tmp_path: Path) -> DB:
        return DB(f"sqlite:///{tmp_path}/p.db")

    def test_sync_pragmas(self, tmp_path: Path) -> None:
        db = self._db(tmp_path)
        try:
            with db.connect() as conn:
                assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
                assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
                assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == 10000
        finally:
            db.dispose()

    @pytest.mark.anyio
    async def test_async_pragmas(self, tmp_path: Path) -> None:
        db = self._db(tmp_path)
        try:
            async with db.async_engine.connect() as conn:
                assert (
                    await conn.execute(text("PRAGMA journal_mode"))
                ).scalar_one() == "wal"
                assert (
                    await conn.execute(text("PRAGMA foreign_keys"))
                ).scalar_one() == 1
        finally:
            await db.adispose()

    def test_write_transaction_takes_lock_up_front(self, tmp_path: Path) -> None:
        """BEGIN IMMEDIATE: a second writer waits (then times out) instead of deadlocking."""
        db = self._db(tmp_path)
        other = DB(f"sqlite:///{tmp_path}/p.db")
        try:
            with db.engine.begin() as conn:
                conn.execute(text("CREATE TABLE t (x INTEGER)"))
            with db.engine.begin() as conn:
                conn.execute(text("SELECT count(*) FROM t"))
                raw = other.engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
                    with pytest.raises(sqlite3.OperationalError, match="locked"):
                        raw.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
                finally:
                    raw.close()
        finally:
            other.dispose()
            db.dispose()

    def test_memory_database(self) -> None:
        db = DB("sqlite:///:memory:")
        try:
            assert db.health_check() is True
        finally:
            db.dispose()
