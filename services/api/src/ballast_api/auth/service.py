"""Login, token validation (idle + absolute expiry), logout."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from ballast_api.principal import Principal
from ballast_common.config import AppConfig
from ballast_common.db import (
    DB,
    UnitOfWork,
    WriteContext,
    retry_db_async,
    run_tx_async,
)
from ballast_common.errors import AuthenticationError
from ballast_common.models import Role, User, UserSession, user_roles, utcnow
from ballast_common.security import (
    averify_password,
    hash_token,
    new_token,
    permissions_for,
)

# Refresh last_seen_at at most this often: each request must not become a write.
_TOUCH_EVERY = timedelta(seconds=15)


async def login(
    db: DB, config: AppConfig, username: str, password: str, ctx: WriteContext
) -> tuple[str, UserSession, User]:
    """Check the password and open a session. Returns (token, session, user)."""
    pepper = config.security.secret_key.get_secret_value()

    def find(uow: UnitOfWork) -> User | None:
        return uow.session.execute(
            select(User)
            .where(User.username == username, User.deleted_at.is_(None))
            .options(selectinload(User.roles).selectinload(Role.permissions))
        ).scalar_one_or_none()

    user = await run_tx_async(find, db=db)
    # Verify outside the transaction and off the event loop: argon2 is slow on purpose.
    # An unknown user is verified against a dummy hash, so timing does not reveal it.
    ok = await averify_password(password, user.password_hash if user else None)
    if user is None or not ok or not user.is_active:
        raise AuthenticationError("wrong username or password")
    token = new_token()
    now = utcnow()
    sec = config.security

    def open_session(uow: UnitOfWork) -> UserSession:
        row = UserSession(
            user_id=user.id,
            token_hash=hash_token(token, pepper),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=sec.session_absolute_timeout_s),
            ip=ctx.ip,
            user_agent=ctx.user_agent,
        )
        uow.session.add(row)
        uow.session.flush([row])
        uow.audit(
            "login",
            "sessions",
            str(row.id),
            new={"user_id": user.id, "expires_at": row.expires_at, "ip": ctx.ip},
        )
        return row

    session = await run_tx_async(open_session, db=db, ctx=ctx.with_user(user.id))
    return token, session, user


async def authenticate(db: DB, config: AppConfig, token: str) -> Principal:
    """The principal for a bearer token, or AuthenticationError (expired, revoked, unknown).

    Every request passes here, so it is one autocommit query (session, user and role
    names in one round trip); last_seen_at is refreshed at most every few seconds. A
    dropped connection is retried like a transaction (`retry_db_async`).
    """
    digest = hash_token(token, config.security.secret_key.get_secret_value())
    idle = timedelta(seconds=config.security.session_idle_timeout_s)
    stmt = (
        select(
            UserSession.id,
            UserSession.user_id,
            UserSession.expires_at,
            UserSession.last_seen_at,
            UserSession.revoked_at,
            User.username,
            User.display_name,
            User.is_active,
            User.deleted_at,
            Role.name,
        )
        .join(User, User.id == UserSession.user_id)
        .outerjoin(user_roles, user_roles.c.user_id == User.id)
        .outerjoin(Role, Role.id == user_roles.c.role_id)
        .where(UserSession.token_hash == digest)
    )

    async def lookup() -> Principal:
        async with db.async_engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await conn.execute(stmt)).all()
            if not rows:
                raise AuthenticationError("invalid session token: log in again")
            first = rows[0]
            now = utcnow()
            if first.revoked_at is not None:
                raise AuthenticationError("session ended: log in again")
            if first.expires_at <= now:
                raise AuthenticationError(
                    "session expired (absolute timeout): log in again"
                )
            if first.last_seen_at + idle <= now:
                raise AuthenticationError(
                    "session expired (idle timeout): log in again"
                )
            if not first.is_active or first.deleted_at is not None:
                raise AuthenticationError("account disabled")
            if now - first.last_seen_at >= _TOUCH_EVERY:
                await conn.execute(
                    update(UserSession)
                    .where(UserSession.id == first.id)
                    .values(last_seen_at=now)
                )
        roles = tuple(sorted({r.name for r in rows if r.name is not None}))
        return Principal(
            user_id=first.user_id,
            username=first.username,
            display_name=first.display_name,
            roles=roles,
            permissions=frozenset(str(p) for p in permissions_for(roles)),
            session_id=first.id,
        )

    return await retry_db_async(lookup, db=db)


async def logout(db: DB, session_id: uuid.UUID, ctx: WriteContext) -> None:
    def revoke(uow: UnitOfWork) -> None:
        row = uow.session.get(UserSession, session_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            uow.audit(
                "logout",
                "sessions",
                str(row.id),
                old={"revoked_at": None},
                new={"revoked_at": row.revoked_at},
            )

    await run_tx_async(revoke, db=db, ctx=ctx)


async def load_user(db: DB, user_id: uuid.UUID) -> User:
    def get(uow: UnitOfWork) -> User:
        return uow.session.execute(
            select(User).where(User.id == user_id).options(selectinload(User.roles))
        ).scalar_one()

    return await run_tx_async(get, db=db)
