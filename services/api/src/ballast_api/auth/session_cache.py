"""Resolved sessions kept in process memory for a few seconds, so a request costs no query.

`authenticate` asks the database once per token per `SESSION_CACHE_TTL_S` (and whenever
last_seen_at is due for its refresh, so idle expiry and activity tracking work exactly
as without the cache); the requests in between are answered from here. Absolute expiry
is checked on every hit.

Invalidation: every committed unit of work in this process reports the cache tags it
touched (`ballast_common.db.on_commit`); a change audited on `users:<id>` (roles,
deactivation, deletion, sign-out everywhere) forgets that user's sessions, one on
`sessions:<id>` (logout, rotation at login) forgets that session. Another replica of the
api learns of such a change only when its entry expires: a revoked session or a removed
role may keep working there for up to `SESSION_CACHE_TTL_S` seconds. A change made
outside the api (SQL by hand, the CLI) is seen within the same bound.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from ballast_api.principal import Principal

# Seconds a resolved session is trusted without asking the database (per process).
SESSION_CACHE_TTL_S = 5.0
# Entries kept at most (the oldest half goes when full); a token is 32 random bytes,
# so this bounds memory, not correctness.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedSession:
    principal: Principal
    expires_at: datetime
    last_seen_at: datetime
    fresh_until: float  # time.monotonic()


class SessionCache:
    """Token digest -> resolved session, with forgetting by user or session id."""

    def __init__(
        self, ttl_s: float = SESSION_CACHE_TTL_S, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[tuple[int, str], CachedSession] = {}
        self._lock = threading.Lock()

    def get(self, scope: int, digest: str) -> CachedSession | None:
        """The entry while fresh (the caller still checks the session's own expiry)."""
        entry = self._entries.get((scope, digest))
        if entry is None:
            return None
        if time.monotonic() >= entry.fresh_until:
            self._entries.pop((scope, digest), None)
            return None
        return entry

    def put(
        self,
        scope: int,
        digest: str,
        principal: Principal,
        *,
        expires_at: datetime,
        last_seen_at: datetime,
    ) -> None:
        if self.ttl_s <= 0:
            return
        entry = CachedSession(
            principal, expires_at, last_seen_at, time.monotonic() + self.ttl_s
        )
        with self._lock:
            if len(self._entries) >= self.max_entries:
                for key in list(self._entries)[: self.max_entries // 2]:
                    self._entries.pop(key, None)
            self._entries[(scope, digest)] = entry

    def forget(
        self,
        *,
        user_ids: set[uuid.UUID] | None = None,
        session_ids: set[uuid.UUID] | None = None,
    ) -> None:
        """Drop the entries of these users and sessions."""
        users, sessions = user_ids or set(), session_ids or set()
        with self._lock:
            stale = [
                key
                for key, entry in self._entries.items()
                if entry.principal.user_id in users
                or entry.principal.session_id in sessions
            ]
            for key in stale:
                self._entries.pop(key, None)

    def forget_tags(self, tags: frozenset[str]) -> None:
        """`on_commit` listener: forget what a committed change to users/sessions touched."""
        users: set[uuid.UUID] = set()
        sessions: set[uuid.UUID] = set()
        for tag in tags:
            kind, _, ident = tag.partition(":")
            if kind not in ("users", "sessions") or not ident:
                continue
            try:
                parsed = uuid.UUID(ident)
            except ValueError:
                continue
            (users if kind == "users" else sessions).add(parsed)
        if users or sessions:
            self.forget(user_ids=users, session_ids=sessions)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


sessions = SessionCache()
