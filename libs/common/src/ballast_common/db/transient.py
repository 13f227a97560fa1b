"""Which database errors are worth retrying, and the retry policy of the transaction runners.

`is_transient` recognises serialization failures, deadlocks, dropped or refused
connections and SQLite's busy errors; `is_unique_violation` a lost race to create the
same row. `Retry` turns them into waits with backoff and, once the attempts run out,
into what the api answers (`TransientError` 503 / `ConflictError` 409).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ballast_common.errors import ConflictError, TransientError
from ballast_common.resilience import backoff_delays

# SQLSTATEs worth retrying: serialization failure, deadlock, and the connection classes.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "busy")
# Seconds a client should wait before trying again after a 503 from the database layer.
RETRY_AFTER_S = 1.0


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the whole transaction may succeed."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(code, str) and (
            code in _TRANSIENT_SQLSTATES or code.startswith("08")
        ):
            return True
        message = str(orig).lower()
        if any(s in message for s in _SQLITE_TRANSIENT):
            return True
        # psycopg/asyncpg report a server that went away as OperationalError/InterfaceError
        # without a SQLSTATE.
        if code is None and any(
            s in message
            for s in (
                "server closed the connection",
                "connection is closed",
                "connection was closed",
                "terminating connection",
                "consuming input failed",
                "connection refused",
                "connection reset",
                "underlying connection is closed",
                # A (re)starting or stopping server refuses new connections with these
                # (SQLSTATE 57P03 on the wire, but libpq reports connection failures
                # without one).
                "the database system is starting up",
                "the database system is shutting down",
                "the database system is in recovery mode",
                "the database system is not yet accepting connections",
                "the database system is not accepting connections",
            )
        ):
            return True
    return isinstance(exc, (ConnectionError, TimeoutError))


def is_unique_violation(exc: BaseException) -> bool:
    """Whether `exc` is a unique-key violation (a lost race to create the same row)."""
    if not isinstance(exc, IntegrityError):
        return False
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(code, str):
        return code == "23505"
    return "unique constraint failed" in str(orig).lower()


def unavailable(exc: BaseException) -> TransientError:
    """What a caller sees when the database stays unavailable through every retry."""
    if isinstance(exc, PoolTimeoutError):
        message = "the database is busy (no free connection): try again shortly"
    else:
        message = "the database is temporarily unavailable: try again shortly"
    return TransientError(message, retry_after=RETRY_AFTER_S)


def lost_race() -> ConflictError:
    return ConflictError(
        "a concurrent request wrote the same record: reload and try again",
        details={"reason": "unique_violation"},
    )


class Retry:
    """The retry policy of the transaction runners: what to retry, how long to wait,
    and what to raise when the attempts run out.

    Args:
        tries: total attempts.
        translate: raise `TransientError`/`ConflictError` when the attempts run out
            (the api); otherwise the last error itself (workers and CLI test it with
            `is_transient`).
    """

    def __init__(self, tries: int, *, translate: bool) -> None:
        self.delays = backoff_delays(attempts=tries)
        self.translate = translate

    def next_delay(self, exc: Exception) -> float:
        """The wait before the next attempt, or raise the error the caller should see."""
        if isinstance(exc, PoolTimeoutError):
            # The pool already waited pool_timeout seconds: answer now.
            if not self.translate:
                raise exc
            raise unavailable(exc) from exc
        race = is_unique_violation(exc)
        if not race and not is_transient(exc):
            raise exc
        delay = next(self.delays, None)
        if delay is None:
            if not self.translate or isinstance(exc, TransientError):
                raise exc
            raise (lost_race() if race else unavailable(exc)) from exc
        return delay
