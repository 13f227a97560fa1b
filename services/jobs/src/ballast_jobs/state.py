"""Per-process configuration and database (fork-safe: rebuilt in each pool process)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ballast_common.app import init_app
from ballast_common.config import AppConfig
from ballast_common.db import DB


@dataclass
class ProcessState:
    pid: int
    config: AppConfig
    db: DB


_lock = threading.Lock()
_state: ProcessState | None = None


def get_state() -> ProcessState:
    """This process's config and database, created on first use after a fork."""
    global _state
    with _lock:
        if _state is None or _state.pid != os.getpid():
            if _state is not None:
                # Inherited from the parent: drop its pooled connections without
                # closing them (the parent still uses those sockets).
                _state.db.engine.dispose(close=False)
            ctx = init_app("jobs")
            _state = ProcessState(os.getpid(), ctx.config, ctx.db)
        return _state


def forget_inherited(db: DB | None) -> None:
    """In a freshly forked pool process: forget a parent's engine without closing it."""
    if db is not None:
        db.engine.dispose(close=False)
