"""One statement, one round trip: hot write paths on PostgreSQL through raw asyncpg.

A hot path (the api's form save) does its whole write - idempotency record, versioned
upsert, audit row - in one SQL statement with data-modifying CTEs. One statement in
autocommit mode is its own transaction, so a save costs one round trip: no BEGIN, no
COMMIT, no ORM flush. The statement runs on the asyncpg connection underneath the api's
SQLAlchemy pool (same connections, same limits, same server settings) and is prepared
once per connection (asyncpg's statement cache). One of the pool's connections stays
leased for these statements between runs (`held.py`: no pool checkout and checkin per
statement); a statement that finds it busy leases another.

Failures are retried like `run_tx_async` retries a transaction: a dropped connection is
discarded from the pool and the statement runs again, a lost unique-key race runs again
(and then sees the winner's row), and when the attempts run out the caller gets
`TransientError` (503) or `ConflictError` (409). Because the statement is atomic, a retry
after an ambiguous failure (the connection died while the server committed) is safe as
long as the statement itself recognises its own write id (the form save does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.util import greenlet_spawn

from ballast_common.db.engine import DB
from ballast_common.db.transient import Retry

# The `prior` CTE of an idempotent statement whose $1 is the write id (NULL: none): a row
# when this write id was recorded already, so the statement answers as a replay.
PRIOR_WRITE = """prior AS (
    SELECT 1 FROM write_ids WHERE $1::varchar IS NOT NULL AND write_id = $1::varchar
)"""


def iso_utc(column: str) -> str:
    """SQL text of timestamptz `column` as Python's isoformat() writes it for UTC (what
    `jsonable` puts in audit rows), so rows written by SQL and by the ORM read alike."""
    return (
        f"(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
        " || '+00:00')"
    )


# asyncpg errors that mean the connection is unusable (discard it, run again).
_CONNECTION_ERRORS = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    # "another operation is in progress": the protocol is out of step (a server that
    # ended the connection under it); raised before anything is sent.
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
    OSError,
)


def _as_dbapi_error(exc: Exception, statement: str) -> Exception:
    """The SQLAlchemy error `Retry` understands for a raw asyncpg failure."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "23505":
        return IntegrityError(statement, None, exc, hide_parameters=True)
    if isinstance(exc, _CONNECTION_ERRORS):
        return DBAPIError(
            statement, None, exc, hide_parameters=True, connection_invalidated=True
        )
    if isinstance(exc, asyncpg.PostgresError):
        return DBAPIError(statement, None, exc, hide_parameters=True)
    return exc


async def fetchrow(
    db: DB,
    statement: str,
    *args: Any,
    attempts: int | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> asyncpg.Record | None:
    """Run one statement in autocommit mode on PostgreSQL; retried on transient errors.

    Args:
        db: a PostgreSQL database (its async engine's pool lends the connection).
        statement: SQL with $n parameters; cast them where PostgreSQL cannot infer a type.
        args: the parameters.
        attempts: total tries (default: the database's `tx_retries`).
        sleep: injectable for tests.

    Returns:
        The first row, or None.

    Raises:
        TransientError: the database stayed unavailable through every attempt (503).
        ConflictError: a unique-key race was lost on every attempt (409).
    """
    retry = Retry(attempts or db.tx_retries, translate=True)
    do_sleep = sleep or asyncio.sleep
    while True:
        try:
            return await _fetchrow_once(db, statement, args)
        except Exception as exc:
            await do_sleep(retry.next_delay(_as_dbapi_error(exc, statement)))


async def _fetchrow_once(
    db: DB, statement: str, args: tuple[Any, ...]
) -> asyncpg.Record | None:
    held = db.held
    fairy = await held.take(db.async_engine)
    leased = fairy is None
    if leased:
        # The held connection is busy: one of the pool's own for this statement. The
        # bare pooled connection, not an `AsyncConnection` around it: the statement
        # needs none of a Connection's machinery, and leasing it costs half as much
        # CPU (one greenlet hop each way, no Connection object).
        fairy = await db.async_engine.raw_connection()
    try:
        raw: asyncpg.Connection = fairy.driver_connection
        return await raw.fetchrow(statement, *args)
    except BaseException as exc:
        # A broken connection, or one left mid-statement by a cancelled request: the
        # pool must not lend it again.
        if isinstance(exc, _CONNECTION_ERRORS) or not isinstance(exc, Exception):
            if not leased:
                held.drop()
            await greenlet_spawn(
                fairy.invalidate, exc if isinstance(exc, Exception) else None
            )
        raise
    finally:
        if leased:
            await greenlet_spawn(fairy.close)
        else:
            held.give_back()


__all__ = ["fetchrow"]
