"""Login (throttled), token validation (idle + absolute expiry), logout, sign-out everywhere."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import selectinload

from ballast_api.auth.session_cache import sessions as session_cache
from ballast_api.auth.throttle import LoginThrottle
from ballast_api.principal import Principal
from ballast_common.config import AppConfig
from ballast_common.db import (
    DB,
    UnitOfWork,
    WriteContext,
    on_commit,
    retry_db_async,
    run_tx_async,
)
from ballast_common.errors import AuthenticationError, TransientError
from ballast_common.models import Role, User, UserSession, user_roles, utcnow
from ballast_common.security import (
    averify_password,
    hash_token,
    new_token,
    permissions_for,
)

# A committed change to a user or a session forgets its cached sessions (this process).
on_commit(session_cache.forget_tags)

# Refresh last_seen_at at most this often: each request must not become a write ...
_TOUCH_EVERY = timedelta(seconds=15)


def touch_interval(idle_timeout_s: float) -> timedelta:
    """How stale last_seen_at may get before a request refreshes it.

    At most a third of the idle timeout (and at most 15 s), so a session in use is
    refreshed well before it could expire, however short the timeout is configured.
    """
    return min(_TOUCH_EVERY, timedelta(seconds=idle_timeout_s / 3))


class LoginThrottled(TransientError):
    """Too many failed logins for this account or from this address (429, Retry-After)."""

    default_code = "rate_limited"
    default_status = 429


def _failure_reason(user: User | None, ok: bool) -> str:
    if user is None:
        return "unknown_user"
    return "disabled" if ok else "wrong_password"


async def login(
    db: DB,
    config: AppConfig,
    username: str,
    password: str,
    ctx: WriteContext,
    *,
    throttle: LoginThrottle,
    replaces: str | None = None,
) -> tuple[str, UserSession, User]:
    """Check the password and open a session. Returns (token, session, user).

    A throttled attempt is refused (429) before any database or argon2 work. A failed
    one is audited (`login_failed`, and `login_throttled` when it starts a lock). The
    session token `replaces`, when the client sent one, is ended in the same
    transaction as the new session opens: a login always rotates the session.
    """
    throttled = await throttle.check(username, ctx.ip)
    if throttled is not None:
        raise LoginThrottled(
            f"too many failed logins: try again in {throttled.retry_after_s} s",
            details={
                "scope": throttled.scope,
                "retry_after_s": throttled.retry_after_s,
            },
            retry_after=throttled.retry_after_s,
        )

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
        locks = await throttle.failed(username, ctx.ip)
        reason = _failure_reason(user, ok)

        def record(uow: UnitOfWork) -> None:
            # An unknown username is not written down: it is often a password typed
            # into the wrong field.
            target = str(user.id) if user is not None else "unknown"
            uow.audit(
                "login_failed",
                "users",
                target,
                new={"reason": reason, "ip": ctx.ip},
            )
            for lock in locks:
                uow.audit(
                    "login_throttled",
                    "users" if lock.scope == "account" else "addresses",
                    target if lock.scope == "account" else (ctx.ip or "unknown"),
                    new={
                        "scope": lock.scope,
                        "strike": lock.strike,
                        "locked_for_s": lock.seconds,
                        "ip": ctx.ip,
                    },
                )

        await run_tx_async(record, db=db, ctx=ctx)
        raise AuthenticationError("wrong username or password")
    await throttle.succeeded(username, ctx.ip)
    token = new_token()
    session = await run_tx_async(
        lambda uow: open_session(
            uow, user, token, config=config, ctx=ctx, replaces=replaces
        ),
        db=db,
        ctx=ctx.with_user(user.id),
    )
    return token, session, user


def open_session(
    uow: UnitOfWork,
    user: User,
    token: str,
    *,
    config: AppConfig,
    ctx: WriteContext,
    replaces: str | None = None,
    method: str = "password",
) -> UserSession:
    """Open a session for `user` with `token` (only its HMAC is stored); audited `login`.

    The session token `replaces`, when the client sent one, is ended in the same
    transaction: a login always rotates the session. `method` (password, oidc, proxy)
    goes into the audit row.
    """
    pepper = config.security.secret_key.get_secret_value()
    now = utcnow()
    if replaces:
        old = uow.session.execute(
            select(UserSession).where(
                UserSession.token_hash == hash_token(replaces, pepper),
                UserSession.revoked_at.is_(None),
            )
        ).scalar_one_or_none()
        if old is not None:
            old.revoked_at = now
            uow.audit(
                "session_rotated",
                "sessions",
                str(old.id),
                old={"revoked_at": None},
                new={"revoked_at": now, "user_id": user.id},
            )
    row = UserSession(
        user_id=user.id,
        token_hash=hash_token(token, pepper),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=config.security.session_absolute_timeout_s),
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )
    uow.session.add(row)
    uow.session.flush([row])
    new: dict[str, Any] = {
        "user_id": user.id,
        "expires_at": row.expires_at,
        "ip": ctx.ip,
    }
    if method != "password":
        new["method"] = method
    uow.audit("login", "sessions", str(row.id), new=new)
    return row


async def authenticate(db: DB, config: AppConfig, token: str) -> Principal:
    """The principal for a bearer token, or AuthenticationError (expired, revoked, unknown).

    Every request passes here. A session resolved in the last few seconds is answered
    from process memory (`auth/session_cache.py`: forgotten on logout and on changes to
    the user, other replicas see a revocation within its TTL); otherwise it is one
    autocommit query (session, user and role names in one round trip). last_seen_at is
    refreshed at most every `touch_interval` (a cached entry is not used once a refresh
    is due). A dropped connection is retried like a transaction (`retry_db_async`).
    """
    digest = hash_token(token, config.security.secret_key.get_secret_value())
    idle = timedelta(seconds=config.security.session_idle_timeout_s)
    touch_every = touch_interval(config.security.session_idle_timeout_s)
    scope = id(db)
    cached = session_cache.get(scope, digest)
    if cached is not None:
        now = utcnow()
        if cached.expires_at > now and now - cached.last_seen_at < touch_every:
            return cached.principal
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
            last_seen = first.last_seen_at
            if now - last_seen >= touch_every:
                await conn.execute(
                    update(UserSession)
                    .where(UserSession.id == first.id)
                    .values(last_seen_at=now)
                )
                last_seen = now
        roles = tuple(sorted({r.name for r in rows if r.name is not None}))
        principal = Principal(
            user_id=first.user_id,
            username=first.username,
            display_name=first.display_name,
            roles=roles,
            permissions=frozenset(str(p) for p in permissions_for(roles)),
            session_id=first.id,
        )
        session_cache.put(
            scope,
            digest,
            principal,
            expires_at=first.expires_at,
            last_seen_at=last_seen,
        )
        return principal

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
    session_cache.forget(session_ids={session_id})


def revoke_all(uow: UnitOfWork, user_id: uuid.UUID, *, by: str) -> int:
    """End every open session of `user_id` (sign-out everywhere); audited. Returns how many.

    Args:
        uow: The unit of work (its context names who does it).
        user_id: Whose sessions end.
        by: ``"self"``, ``"admin"`` (sign-out everywhere) or why an admin's change
            ended them (``"role_change"``, ``"deactivated"``), for the audit row.
    """
    now = utcnow()
    result = uow.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    ended = cast("CursorResult[Any]", result).rowcount
    uow.audit(
        "logout_all",
        "users",
        str(user_id),
        new={"sessions_ended": int(ended or 0), "by": by, "revoked_at": now},
    )
    return int(ended or 0)


async def load_user(db: DB, user_id: uuid.UUID) -> User:
    def get(uow: UnitOfWork) -> User:
        return uow.session.execute(
            select(User).where(User.id == user_id).options(selectinload(User.roles))
        ).scalar_one()

    return await run_tx_async(get, db=db)
