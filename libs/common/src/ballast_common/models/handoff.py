from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model


class SessionHandoff(Model):
    """A login hand-off in flight: a session token parked under a one-time nonce.

    The row is keyed by SHA-256 of the nonce and holds the token sealed with a key
    derived from the nonce and the server secret (`ballast_common.sealing`), so the table
    alone gives neither the nonce nor the token. Redeemed once (DELETE … RETURNING),
    valid for a minute; expired rows are swept when the next hand-off is issued.
    """

    __tablename__ = "session_handoffs"

    nonce_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed_token: Mapped[str] = mapped_column(Text)
    max_age_s: Mapped[int] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
