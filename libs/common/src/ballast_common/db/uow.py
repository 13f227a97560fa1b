"""Unit of work and `run_tx`: one transaction, audited and idempotent writes, retries.

Repositories flush; only the unit of work commits. `run_tx(fn)` runs `fn(uow)` in a new
transaction and retries the whole function on transient failures (serialization failure,
deadlock, dropped connection, SQLite busy) with exponential backoff and full jitter, so the
caller sees one result. Writes carrying a client write id are idempotent: the outcome is
stored in `write_ids` in the same transaction, and a replay returns it unchanged. A retry
after an ambiguous commit (the connection died during COMMIT) finds the stored outcome and
so applies exactly once.

Two racing first writes of one unique key (two clients creating the same draft field)
end in a unique violation for the loser: the runner retries it too, and the retry finds
the winner's row. In the api (`run_tx_async`) a failure that outlasts the retries
becomes `TransientError` (503 with `Retry-After`), a unique violation that outlasts them
`ConflictError` (409), and an exhausted connection pool `TransientError` at once
(waiting longer only adds load). `retry_db_async` gives the same retries to work outside a unit of work (the
api's authentication lookup).

What counts as transient and the retry policy live in `db/transient.py`; the write-id
store in `db/idempotency.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from ballast_common.cache import current_cache
from ballast_common.db.engine import DB, get_db
from ballast_common.db.idempotency import Replay, run_once
from ballast_common.db.repository import Repository
from ballast_common.db.serialize import jsonable
from ballast_common.db.transient import (
    Retry,
)
from ballast_common.models import AuditLog, Model

T = TypeVar("T")
M = TypeVar("M", bound=Model)

# In-process listeners told the cache tags of every committed unit of work (the api's
# session cache forgets the sessions of a user whose roles or sessions changed).
_COMMIT_LISTENERS: list[Callable[[frozenset[str]], None]] = []


def on_commit(listener: Callable[[frozenset[str]], None]) -> None:
    """Call `listener(tags)` in this process after every commit that touched something
    (tags as in `UnitOfWork.touched`: `<type>` and `<type>:<id>`). It must be cheap and
    must not raise."""
    if listener not in _COMMIT_LISTENERS:
        _COMMIT_LISTENERS.append(listener)


def _notify(tags: Iterable[str]) -> None:
    frozen = frozenset(tags)
    if frozen:
        for listener in _COMMIT_LISTENERS:
            listener(frozen)


@dataclass(frozen=True)
class WriteContext:
    """Who writes, from where: copied into every audit row of the transaction."""

    user_id: uuid.UUID | None = None
    correlation_id: str | None = None
    trace_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    def with_user(self, user_id: uuid.UUID | None) -> WriteContext:
        return replace(self, user_id=user_id)


@dataclass
class UnitOfWork:
    """One transaction. Use through `run_tx` (or as a context manager around a session)."""

    session: Session
    ctx: WriteContext = field(default_factory=WriteContext)
    _after_commit: list[Callable[[], None]] = field(default_factory=list)
    audit_count: int = 0
    # The write id of the idempotent write in progress; copied into its audit rows.
    write_id: str | None = None
    # Cache tags of what the audited writes touched (`<type>` and `<type>:<id>`),
    # busted in every replica once the transaction has committed.
    touched: set[str] = field(default_factory=set)

    def repo(
        self, model: type[M], *, resource_type: str | None = None
    ) -> Repository[M]:
        """A repository over `model` bound to this transaction."""
        return Repository(model, self, resource_type=resource_type)

    def audit(
        self,
        action: str,
        resource_type: str,
        resource_id: str,
        *,
        old: Mapping[str, Any] | None = None,
        new: Mapping[str, Any] | None = None,
        write_id: str | None = None,
    ) -> AuditLog:
        """Add an audit row to this transaction."""
        row = AuditLog(
            user_id=self.ctx.user_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            old_values=jsonable(dict(old)) if old is not None else None,
            new_values=jsonable(dict(new)) if new is not None else None,
            correlation_id=self.ctx.correlation_id,
            trace_id=self.ctx.trace_id,
            ip_address=self.ctx.ip,
            user_agent=self.ctx.user_agent,
            write_id=write_id or self.write_id,
        )
        self.session.add(row)
        self.audit_count += 1
        self.touched.update((resource_type, f"{resource_type}:{resource_id}"))
        return row

    def idempotent(
        self,
        write_id: str | None,
        operation: str,
        payload: Any,
        fn: Callable[[], tuple[int, dict[str, Any]]],
    ) -> Replay:
        """Run `fn` once per write id; a replay returns the stored outcome.

        Args:
            write_id: the client's id for this write; None runs `fn` without idempotency.
            operation: a name for the kind of write (a write id is valid for one operation).
            payload: the request data; a replay with different data is refused.
            fn: does the write and returns (status code, JSON response).

        Raises:
            ValidationError: the write id was used before for another operation or payload.
            WriteIdRace: a concurrent transaction holds the write id (retried by run_tx).
        """
        previous, self.write_id = self.write_id, write_id
        try:
            return run_once(
                self.session, self.ctx.user_id, write_id, operation, payload, fn
            )
        finally:
            self.write_id = previous

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` after a successful commit (send tasks, bust caches); dropped on rollback."""
        self._after_commit.append(fn)

    def flush(self) -> None:
        self.session.flush()

    def commit(self) -> None:
        self.session.commit()
        callbacks, self._after_commit = self._after_commit, []
        for fn in callbacks:
            fn()
        _notify(self.touched)
        _bust(self)

    def rollback(self) -> None:
        self._after_commit.clear()
        self.touched.clear()
        self.session.rollback()

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        self.session.close()


def run_tx(
    fn: Callable[[UnitOfWork], T],
    *,
    db: DB | None = None,
    ctx: WriteContext | None = None,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn(uow)` in one transaction; retry the whole function on transient errors.

    Args:
        fn: the work. It may run more than once: keep side effects inside the
            transaction or in `uow.after_commit`.
        db: the database (default: the process default).
        ctx: who writes (audit rows).
        attempts: total tries (default: the database's `tx_retries`).
        sleep: injectable for tests.

    Returns:
        What `fn` returned on the attempt that committed.

    Raises:
        Exception: the last error when a transient one outlasts the attempts (test it
            with `is_transient`); `run_tx_async` translates it for the api.
    """
    database = db or get_db()
    retry = Retry(attempts or database.tx_retries, translate=False)
    while True:
        session = database.session()
        uow = UnitOfWork(session, ctx or WriteContext())
        try:
            result = fn(uow)
            uow.commit()
            return result
        except Exception as exc:
            _safe_rollback(uow)
            sleep(retry.next_delay(exc))
        finally:
            session.close()


async def run_tx_async(
    fn: Callable[[UnitOfWork], T],
    *,
    db: DB | None = None,
    ctx: WriteContext | None = None,
    attempts: int | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """`run_tx` on the async engine (asyncpg/aiosqlite) for the api.

    The same synchronous repository code runs on the async connection through
    `AsyncSession.run_sync` (SQLAlchemy's greenlet bridge), so there is one code path.

    Raises:
        TransientError: the database stayed unavailable through every attempt, or no
            pooled connection became free within the pool timeout (503).
        ConflictError: a unique-key race was lost on every attempt (409).
    """
    database = db or get_db()
    retry = Retry(attempts or database.tx_retries, translate=True)
    do_sleep = sleep or asyncio.sleep

    def work(sync_session: Session, holder: list[UnitOfWork]) -> T:
        uow = UnitOfWork(sync_session, ctx or WriteContext())
        result = fn(uow)
        sync_session.flush()
        holder.append(uow)
        return result

    while True:
        async with database.async_session_factory() as session:
            holder: list[UnitOfWork] = []
            try:
                result = await session.run_sync(work, holder)
                await session.commit()
            except Exception as exc:
                # The connection may be gone; the pool discards it.
                with contextlib.suppress(Exception):
                    await session.rollback()
                await do_sleep(retry.next_delay(exc))
                continue
            for uow in holder:
                callbacks, uow._after_commit = uow._after_commit, []
                for cb in callbacks:
                    cb()
                _notify(uow.touched)
                if uow.touched and current_cache() is not None:
                    # Off the event loop: the bust waits for every replica's answer.
                    await asyncio.to_thread(_bust, uow)
            return result


async def retry_db_async(
    op: Callable[[], Awaitable[T]],
    *,
    db: DB | None = None,
    attempts: int | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """Run `op()` with `run_tx_async`'s retries, for database work outside a unit of work.

    Args:
        op: opens its own connection(s) on each call (a dropped one is not reused);
            it may run more than once.
        db: the database whose `tx_retries` bounds the attempts (default: the process
            default).
        attempts: total tries (default: the database's `tx_retries`).
        sleep: injectable for tests.

    Returns:
        What `op` returned.

    Raises:
        TransientError: the database stayed unavailable (503 with `Retry-After`).
    """
    retry = Retry(attempts or (db or get_db()).tx_retries, translate=True)
    do_sleep = sleep or asyncio.sleep
    while True:
        try:
            return await op()
        except Exception as exc:
            await do_sleep(retry.next_delay(exc))


async def bust_after_commit(changed: Iterable[tuple[str, str]]) -> None:
    """Bust the cache tags of changes committed outside a unit of work (the one-statement
    hot paths): `<type>` and `<type>:<id>` per (type, id), as `UnitOfWork.audit` records.
    """
    cache = current_cache()
    tags = {t for rtype, rid in changed for t in (rtype, f"{rtype}:{rid}")}
    _notify(tags)
    if tags and cache is not None:
        if cache.has_l2:
            # Off the event loop: the bust waits for every replica's answer.
            await asyncio.to_thread(cache.bust, *sorted(tags))
        else:
            # Only this process's memory: no wait, and no thread hop per save.
            cache.bust(*sorted(tags))


def _bust(uow: UnitOfWork) -> None:
    """Bust the cache tags of what `uow` wrote (once; nothing without a cache)."""
    tags, uow.touched = uow.touched, set()
    cache = current_cache()
    if tags and cache is not None:
        cache.bust(*sorted(tags))


def _safe_rollback(uow: UnitOfWork) -> None:
    try:
        uow.rollback()
    except Exception:  # the connection may be gone; the pool discards it
        uow._after_commit.clear()


__all__ = [
    "UnitOfWork",
    "WriteContext",
    "bust_after_commit",
    "on_commit",
    "retry_db_async",
    "run_tx",
    "run_tx_async",
]
