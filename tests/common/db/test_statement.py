"""One-statement writes (db/statement.py) on the pool's own connections: every lease is
handed back, the one held between statements (db/held.py) too when the database is
disposed, and a connection a statement left in an unknown state is never lent again.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from ballast_common.db import DB, held
from ballast_common.db.statement import fetchrow
from ballast_common.errors import TransientError


def _checked_out(db: DB) -> int:
    """Connections in use (the one held for statements counts while it runs one)."""
    return db.pool_stats()["checked_out"]


def _checkouts(db: DB) -> list[int]:
    """A list that grows by one at each checkout from the async pool."""
    seen: list[int] = []
    event.listen(
        db.async_engine.sync_engine.pool, "checkout", lambda *_: seen.append(1)
    )
    return seen


async def _pid(db: DB) -> int:
    row = await fetchrow(db, "SELECT pg_backend_pid() AS pid")
    assert row is not None
    return int(row["pid"])


@pytest.mark.anyio
async def test_every_statement_hands_its_connection_back(pg_db: DB) -> None:
    rows = await asyncio.gather(
        *(fetchrow(pg_db, "SELECT $1::int AS n", n) for n in range(30))
    )
    assert [r["n"] for r in rows if r is not None] == list(range(30))
    assert _checked_out(pg_db) == 0
    # A statement the server refuses hands it back too (and is not retried).
    with pytest.raises(Exception, match="division by zero"):
        await fetchrow(pg_db, "SELECT 1 / $1::int", 0)
    assert _checked_out(pg_db) == 0
    await pg_db.adispose()


async def _alive(db: DB, pid: int) -> bool:
    row = await fetchrow(
        db, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int", pid
    )
    return row is not None and int(row["n"]) > 0


async def _gone(db: DB, pid: int) -> bool:
    """Whether backend `pid` ends within 5 s (asked on a database of its own)."""
    watcher = DB(str(db.url))
    try:
        for _ in range(50):
            if not await _alive(watcher, pid):
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await watcher.adispose()


@pytest.mark.anyio
async def test_statements_in_turn_run_on_one_held_connection(pg_db: DB) -> None:
    first = await _pid(pg_db)
    checkouts = _checkouts(pg_db)
    assert [await _pid(pg_db) for _ in range(20)] == [first] * 20
    # No checkout from the pool per statement: the connection stayed leased ...
    assert checkouts == []
    assert pg_db.async_engine.sync_engine.pool.checkedout() == 1
    # ... and between statements the pool's stats count it as idle.
    stats = pg_db.pool_stats()
    assert stats["checked_out"] == 0
    assert stats["idle"] >= 1
    await pg_db.adispose()
    assert pg_db.async_engine.sync_engine.pool.checkedout() == 0
    assert await _gone(pg_db, first)
    await pg_db.adispose()


@pytest.mark.anyio
async def test_a_statement_that_finds_the_held_connection_busy_leases_another(
    pg_db: DB,
) -> None:
    first = await _pid(pg_db)
    slow = asyncio.create_task(
        fetchrow(pg_db, "SELECT pg_backend_pid() AS pid, pg_sleep(0.5)")
    )
    await asyncio.sleep(0.1)
    assert pg_db.held.busy
    assert await _pid(pg_db) != first
    assert not slow.done()
    row = await slow
    assert row is not None
    assert row["pid"] == first
    assert _checked_out(pg_db) == 0
    assert await _pid(pg_db) == first  # held again, free again
    await pg_db.adispose()


@pytest.mark.anyio
async def test_the_held_connection_goes_back_to_the_pool_every_hold_s(
    pg_db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _pid(pg_db)
    checkouts = _checkouts(pg_db)
    monkeypatch.setattr(held, "HOLD_S", 0.0)
    for _ in range(3):
        await _pid(pg_db)
    assert len(checkouts) == 3  # handed back and leased again each time
    assert _checked_out(pg_db) == 0
    await pg_db.adispose()


@pytest.mark.anyio
async def test_dispose_closes_the_held_connection(pg_db: DB) -> None:
    pid = await _pid(pg_db)
    pg_db.dispose()  # not awaited: the connection is terminated, not handed back
    assert pg_db.async_engine.sync_engine.pool.checkedout() == 0
    assert await _gone(pg_db, pid)
    assert await _pid(pg_db) != pid
    await pg_db.adispose()


@pytest.mark.anyio
async def test_a_statement_cancelled_midway_never_lends_its_connection_again(
    pg_db: DB,
) -> None:
    before = await _pid(pg_db)
    assert await _pid(pg_db) == before  # one pooled connection, lent again and again
    slow = asyncio.create_task(fetchrow(pg_db, "SELECT pg_sleep(30)"))
    await asyncio.sleep(0.3)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert _checked_out(pg_db) == 0
    # Its connection was closed, not put back: the next statement runs on a new one
    # and the old backend is gone.
    assert await asyncio.wait_for(_pid(pg_db), 10) != before
    watcher = DB(str(pg_db.url))
    try:
        for _ in range(50):
            if not await _alive(watcher, before):
                break
            await asyncio.sleep(0.1)
        assert not await _alive(watcher, before)
    finally:
        await watcher.adispose()
        await pg_db.adispose()


@pytest.mark.anyio
async def test_a_connection_killed_under_a_statement_is_replaced(pg_db: DB) -> None:
    victim = await _pid(pg_db)
    killer = DB(str(pg_db.url))
    try:
        await fetchrow(killer, "SELECT pg_terminate_backend($1::int)", victim)
        # The next statement finds the pooled connection dead, discards it and runs
        # again on a new one.
        assert await _pid(pg_db) != victim
        assert _checked_out(pg_db) == 0
    finally:
        await killer.adispose()
        await pg_db.adispose()


@pytest.mark.anyio
async def test_a_database_that_stays_away_is_a_transient_error(pg_db: DB) -> None:
    async def no_wait(_delay: float) -> None:
        return None

    victim = await _pid(pg_db)
    killer = DB(str(pg_db.url))
    try:
        await fetchrow(killer, "SELECT pg_terminate_backend($1::int)", victim)
        with pytest.raises(TransientError):
            # One attempt only: the dead pooled connection is all it gets.
            await fetchrow(pg_db, "SELECT 1", attempts=1, sleep=no_wait)
        assert _checked_out(pg_db) == 0
    finally:
        await killer.adispose()
        await pg_db.adispose()
