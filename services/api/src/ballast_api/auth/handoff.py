"""Login hand-off nonces, shared by every ui replica.

After a login the ui asks for a nonce (`issue`), hands it to the browser, and the
browser posts it to whichever ui replica its next request reaches; that replica trades
it for the token (`redeem`) and sets the HttpOnly cookie. The row is keyed by SHA-256
of the nonce and holds the token sealed (AES-256-GCM, `ballast_common.sealing`) with a key
derived from the nonce and the server secret, so a database reader can use neither. A nonce is valid for
`HANDOFF_TTL_S` and redeemed at most once: `DELETE … RETURNING` on PostgreSQL and
SQLite, so of two concurrent redeems exactly one gets the row. Expired rows are swept
whenever a hand-off is issued.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, run_tx_async
from ballast_common.errors import AppError
from ballast_common.models import SessionHandoff, UserSession, utcnow
from ballast_common.sealing import SealError, derive_key, seal, unseal
from ballast_common.security import nonce_digest

HANDOFF_TTL_S = 60


def _key(nonce: str, pepper: str) -> bytes:
    # From the nonce (which the database never sees) and the server secret.
    return derive_key((pepper + "\x00" + nonce).encode(), "session handoff")


class InvalidHandoff(AppError):
    """Unknown, already redeemed or expired hand-off nonce (400)."""

    default_code = "invalid_handoff"
    default_status = 400


async def issue(
    db: DB,
    config: AppConfig,
    token: str,
    session_id: Any,
    *,
    now: datetime | None = None,
) -> tuple[str, datetime, int]:
    """Park ``token`` (of session ``session_id``) under a fresh nonce.

    Returns:
        ``(nonce, expires_at, max_age_s)``; ``max_age_s`` is the time left until the
        session's absolute expiry (the cookie's lifetime), at least 60 s.
    """
    pepper = config.security.secret_key.get_secret_value()
    nonce = secrets.token_urlsafe(32)
    start = now or utcnow()
    expires_at = start + timedelta(seconds=HANDOFF_TTL_S)

    def park(uow: UnitOfWork) -> int:
        session_expires = uow.session.execute(
            select(UserSession.expires_at).where(UserSession.id == session_id)
        ).scalar_one()
        max_age = max(60, int((session_expires - start).total_seconds()))
        uow.session.execute(
            delete(SessionHandoff)
            .where(SessionHandoff.expires_at < start)
            .execution_options(synchronize_session=False)
        )
        uow.session.add(
            SessionHandoff(
                nonce_sha256=nonce_digest(nonce),
                sealed_token=seal(
                    token, _key(nonce, pepper), context=nonce_digest(nonce)
                ),
                max_age_s=max_age,
                expires_at=expires_at,
            )
        )
        return max_age

    max_age = await run_tx_async(park, db=db)
    return nonce, expires_at, max_age


async def redeem(
    db: DB, config: AppConfig, nonce: str, *, now: datetime | None = None
) -> tuple[str, int]:
    """Take the token parked under ``nonce``: once, before it expires.

    Raises:
        InvalidHandoff: Unknown, already redeemed, or expired nonce.
    """
    pepper = config.security.secret_key.get_secret_value()

    def take(uow: UnitOfWork) -> tuple[str, int, datetime] | None:
        result = uow.session.execute(
            delete(SessionHandoff)
            .where(SessionHandoff.nonce_sha256 == nonce_digest(nonce))
            .returning(
                SessionHandoff.sealed_token,
                SessionHandoff.max_age_s,
                SessionHandoff.expires_at,
            )
            .execution_options(synchronize_session=False)
        )
        row = cast("CursorResult[Any]", result).first()
        return None if row is None else (row[0], row[1], row[2])

    taken = await run_tx_async(take, db=db)
    if taken is None:
        raise InvalidHandoff("unknown or already used hand-off nonce")
    sealed, max_age, expires_at = taken
    if expires_at <= (now or utcnow()):
        raise InvalidHandoff("hand-off nonce expired")
    try:
        token = unseal(sealed, _key(nonce, pepper), context=nonce_digest(nonce))
    except SealError:
        raise InvalidHandoff("hand-off nonce does not open its token") from None
    return token, max_age
