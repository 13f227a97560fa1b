"""Engines and sessions: `DB`, the process default (`init_db`/`get_db`) and `get_conn()`.

PostgreSQL uses psycopg (sync: workers, CLI) and asyncpg (async: the api). SQLite is the
embedded default: WAL mode, foreign keys on, and write transactions that take the write
lock up front (BEGIN IMMEDIATE) so concurrent writers queue on busy_timeout instead of
failing with SQLITE_BUSY when they upgrade a read lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from ballast_common.config import DatabaseConfig
from ballast_common.db.held import HeldConnection
from ballast_common.errors import ConfigError

_SYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite+pysqlite"}
_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    if name in ("postgresql", "postgres"):
        return "postgresql"
    if name == "sqlite":
        return "sqlite"
    raise ConfigError(f"unsupported database {name!r}: use sqlite:/// or postgresql://")


def normalize_url(raw: str | URL, *, use_async: bool = False) -> URL:
    """The URL with the driver Ballast uses for it (psycopg/asyncpg, pysqlite/aiosqlite)."""
    url = make_url(raw) if isinstance(raw, str) else raw
    backend = _backend(url)
    drivers = _ASYNC_DRIVERS if use_async else _SYNC_DRIVERS
    return url.set(drivername=drivers[backend])


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN IMMEDIATE instead of pysqlite's lazy BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # An AUTOCOMMIT connection (the api's per-request session lookup) runs each statement
    # on its own: a BEGIN here would hold the write lock for the whole connection and be
    # rolled back, not committed, when it is returned (its writes were lost).
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _install_sqlite_events(engine: Engine) -> None:
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)


def _ensure_sqlite_dir(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


class DB:
    """A database: the sync engine and, on demand, the async one over the same URL.

    Args:
        url: `sqlite:///path` or `postgresql://user@host/db` (driver chosen here).
        pool_size: connections kept per engine (PostgreSQL, SQLite files).
        max_overflow: extra connections allowed under load.
        pool_timeout: seconds to wait for a free connection (then the pool raises
            TimeoutError, which the api answers with 503 + Retry-After).
        statement_timeout_ms: PostgreSQL statement_timeout; 0 disables.
        application_name: shown in pg_stat_activity.
        echo: log every statement.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        pool_timeout: float = 10.0,
        statement_timeout_ms: int = 0,
        application_name: str = "ballast",
        echo: bool = False,
        tx_retries: int = 5,
    ) -> None:
        self.url = normalize_url(url)
        self.backend = _backend(self.url)
        self.tx_retries = tx_retries
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._pool_timeout = pool_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._application_name = application_name
        self._echo = echo
        if self.is_sqlite:
            _ensure_sqlite_dir(self.url)
        self.engine: Engine = create_engine(
            self.url, **self._engine_kwargs(use_async=False)
        )
        if self.is_sqlite:
            _install_sqlite_events(self.engine)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self._async_engine: AsyncEngine | None = None
        self._async_session_factory: async_sessionmaker[AsyncSession] | None = None
        # The async pool's connection the hot statements keep (db/held.py).
        self.held = HeldConnection()

    @classmethod
    def from_config(
        cls, cfg: DatabaseConfig, *, application_name: str = "ballast"
    ) -> DB:
        """Build from `AppConfig.database` (the password is filled in from the secret)."""
        return cls(
            cfg.url_with_password(),
            pool_size=cfg.pool_size,
            max_overflow=cfg.max_overflow,
            pool_timeout=cfg.pool_timeout,
            statement_timeout_ms=cfg.statement_timeout_ms,
            application_name=application_name,
            echo=cfg.echo,
            tx_retries=cfg.tx_retries,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    def _engine_kwargs(self, *, use_async: bool) -> dict[str, Any]:
        # Statement parameters are user data: never in echo lines or exception text.
        kwargs: dict[str, Any] = {"echo": self._echo, "hide_parameters": True}
        if self.is_sqlite:
            # Waits on the write lock go through busy_timeout; no pre-ping needed for files.
            kwargs["connect_args"] = {"timeout": 10}
            if self.url.database not in (None, "", ":memory:"):
                # A file database is pooled (QueuePool) like PostgreSQL: same limits.
                kwargs.update(
                    pool_size=self._pool_size,
                    max_overflow=self._max_overflow,
                    pool_timeout=self._pool_timeout,
                )
            return kwargs
        kwargs.update(
            pool_size=self._pool_size,
            max_overflow=self._max_overflow,
            pool_timeout=self._pool_timeout,
            # No pre-ping: it costs a round trip per transaction. A connection that died
            # in the pool fails its transaction as "invalidated", which run_tx retries.
            # Recycle well before typical server/proxy idle cut-offs.
            pool_recycle=1800,
        )
        options = {"application_name": self._application_name}
        if self._statement_timeout_ms:
            options["statement_timeout"] = str(self._statement_timeout_ms)
        if use_async:
            kwargs["connect_args"] = {"server_settings": options}
        else:
            kwargs["connect_args"] = {
                "options": " ".join(f"-c {k}={v}" for k, v in options.items())
            }
        return kwargs

    @property
    def async_engine(self) -> AsyncEngine:
        """The asyncpg/aiosqlite engine, created on first use (the api only)."""
        if self._async_engine is None:
            async_url = normalize_url(self.url, use_async=True)
            engine = create_async_engine(
                async_url, **self._engine_kwargs(use_async=True)
            )
            if self.is_sqlite:
                _install_sqlite_events(engine.sync_engine)
            self._async_engine = engine
        return self._async_engine

    @property
    def async_session_factory(self) -> async_sessionmaker[AsyncSession]:
        if self._async_session_factory is None:
            self._async_session_factory = async_sessionmaker(
                self.async_engine, expire_on_commit=False
            )
        return self._async_session_factory

    def session(self) -> Session:
        """A new ORM session (use `run_tx` for writes: only the unit of work commits)."""
        return self.session_factory()

    def connect(self) -> Connection:
        return self.engine.connect()

    def health_check(self) -> bool:
        """True when the database answers a trivial query; never raises."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def ahealth_check(self) -> bool:
        """Async health check over the async engine; never raises."""
        try:
            async with self.async_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def pool_stats(self) -> dict[str, int]:
        """Checked-out / idle / overflow / size of the pools (sync + async) for metrics."""
        stats = {"checked_out": 0, "idle": 0, "overflow": 0, "size": 0}
        engines = [self.engine]
        if self._async_engine is not None:
            engines.append(self._async_engine.sync_engine)
        for engine in engines:
            pool: Any = engine.pool
            for key, attr in (
                ("checked_out", "checkedout"),
                ("idle", "checkedin"),
                ("overflow", "overflow"),
                ("size", "size"),
            ):
                fn = getattr(pool, attr, None)
                if callable(fn):
                    stats[key] += max(int(fn()), 0)
        # The connection held for hot statements is idle between them.
        idle_held = min(self.held.idle, stats["checked_out"])
        stats["checked_out"] -= idle_held
        stats["idle"] += idle_held
        return stats

    def dispose(self) -> None:
        self.engine.dispose()
        self.held.forget()
        if self._async_engine is not None:
            self._async_engine.sync_engine.dispose()

    async def adispose(self) -> None:
        await self.held.release()
        if self._async_engine is not None:
            await self._async_engine.dispose()
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"DB({self.url.render_as_string(hide_password=True)!r})"


_default_db: DB | None = None


def init_db(db: DB | DatabaseConfig, *, application_name: str = "ballast") -> DB:
    """Set the process-wide default database (done by `init_app`)."""
    global _default_db
    if isinstance(db, DatabaseConfig):
        db = DB.from_config(db, application_name=application_name)
    _default_db = db
    return db


def get_db() -> DB:
    """The process-wide default database set by `init_app`/`init_db`."""
    if _default_db is None:
        raise ConfigError("no database configured: call init_app() or init_db() first")
    return _default_db


def reset_db() -> None:
    """Dispose and forget the default database (tests, shutdown)."""
    global _default_db
    if _default_db is not None:
        _default_db.dispose()
    _default_db = None


def get_conn(db: DB | None = None) -> Connection:
    """A connection from the default database: `with get_conn() as conn: ...`."""
    return (db or get_db()).engine.connect()


__all__ = [
    "DB",
    "get_conn",
    "get_db",
    "init_db",
    "normalize_url",
    "reset_db",
]
