"""One pooled connection that the hot statements (`statement.py`) keep leased between runs.

Leasing a connection from SQLAlchemy's async pool and handing it back costs two greenlet
hops and the pool's checkout/checkin machinery: about 0.1 ms of a 1-client save at p50
and more at p99, a fifth of what the api adds to the statement itself. So a process keeps
one of its pool's connections for them. It is the pool's own (same limits, same
settings); it serves one statement at a time, and a statement that finds it busy leases
its own from the pool as before.

It is handed back to the pool every `HOLD_S` seconds (so the pool's recycling applies to
it too), dropped when a statement left it broken or mid-statement, and released by
`DB.dispose()` / `DB.adispose()`. Like every connection of the async pool it belongs to the
loop that opened it: dispose the database on that loop. Between statements the pool counts it as checked out;
`DB.pool_stats()` reports it as idle, which it is.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

# Seconds a lease is kept before it goes back to the pool (and is leased again).
HOLD_S = 60.0


class HeldConnection:
    """The pooled connection a database's hot statements share, one at a time."""

    def __init__(self) -> None:
        self._fairy: Any = None
        self._since = 0.0
        self.busy = False

    @property
    def idle(self) -> int:
        """1 while it is held and no statement runs on it, else 0."""
        return int(self._fairy is not None and not self.busy)

    async def take(self, engine: AsyncEngine) -> Any:
        """The held connection (leased from `engine`'s pool now if there is none), or
        None when a statement runs on it: the caller leases its own then. A connection
        taken is given back with `give_back()`, after `drop()` when it is unusable."""
        if self.busy:
            return None
        self.busy = True
        try:
            if self._fairy is not None and time.monotonic() - self._since > HOLD_S:
                await self.release()
            if self._fairy is None:
                self._fairy = await engine.raw_connection()
                self._since = time.monotonic()
        except BaseException:
            self.busy = False
            raise
        return self._fairy

    def give_back(self) -> None:
        """The statement is over; the connection stays held."""
        self.busy = False

    def drop(self) -> None:
        """Hold it no more: broken, or left mid-statement (the caller invalidates it,
        so the pool never lends it again)."""
        self._fairy = None

    async def release(self) -> None:
        """Hand it back to the pool (`DB.adispose`, and every `HOLD_S`)."""
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            await greenlet_spawn(fairy.close)

    def forget(self) -> None:
        """Close it without waiting for the server (`DB.dispose`, which is not awaited)."""
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            # As the pool's own disposal does: a connection whose loop is over cannot
            # be closed cleanly any more, and that must not stop the rest.
            with contextlib.suppress(Exception):
                fairy.invalidate()


__all__ = ["HOLD_S", "HeldConnection"]
