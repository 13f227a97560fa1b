"""Session token hand-off between the Streamlit session and the browser's cookie jar.

The token must survive a refresh and reach new tabs, but never appear in a URL, a
log, or page JavaScript. After a login the Streamlit session (Python) holds the token
and issues a one-time, short-lived nonce; the browser bridge posts the nonce to
``/_ballast/session`` (a route on the same server), which answers with an ``HttpOnly``
cookie holding the token. Every later Streamlit session of that browser reads the
cookie from its initial request (``st.context.cookies``).

Streamlit already needs session affinity behind a load balancer (websocket and
uploads), so the nonce living in this process is enough.
"""

from __future__ import annotations

import secrets
import threading
import time

COOKIE_NAME = "ballast_session"
HANDOFF_TTL_S = 60.0


class HandoffStore:
    """Single-use nonces for session tokens, valid for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = HANDOFF_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, str, int]] = {}

    def issue(self, token: str, max_age_s: int) -> str:
        """Park ``token`` under a fresh nonce.

        Args:
            token: The api session token.
            max_age_s: Cookie lifetime (the session's absolute expiry).

        Returns:
            The nonce (safe to hand to the page).
        """
        nonce = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            self._items[nonce] = (now + self.ttl_s, token, max_age_s)
        return nonce

    def redeem(self, nonce: str) -> tuple[str, int] | None:
        """Take the token parked under ``nonce`` (once).

        Returns:
            ``(token, max_age_s)``, or ``None`` for an unknown or expired nonce.
        """
        with self._lock:
            item = self._items.pop(nonce, None)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1], item[2]


HANDOFFS = HandoffStore()
