"""Sign-in by an external identity (OIDC provider or authenticating proxy).

The identity is (issuer, subject): a user is found by it, never by a claimed e-mail or
username, so an identity provider cannot hand out a local account by naming it. On the
first sign-in the user is created (audited `user_created`); on every sign-in e-mail,
display name and roles follow the provider (audited `update` when they change), and a
Ballast session is opened as for a password login.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ballast_api.auth.service import open_session
from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, WriteContext, run_tx_async
from ballast_common.errors import AuthenticationError, PermissionDenied
from ballast_common.models import Role, User, UserIdentity, UserSession, utcnow
from ballast_common.security import new_token

# Never a valid password hash: an externally signed-in user has no password to guess.
UNUSABLE_HASH = "!external"

_USERNAME_OK = re.compile(r"[^A-Za-z0-9._@+-]")


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the provider or proxy says signed in (already verified by the caller)."""

    issuer: str
    subject: str
    username: str
    email: str | None
    display_name: str
    groups: tuple[str, ...]
    method: str  # "oidc" or "proxy", for the audit rows


class NoRole(PermissionDenied):
    """Signed in at the provider, but none of the user's groups maps to a Ballast role."""

    default_code = "no_role"


def _clean(value: str | None, limit: int) -> str:
    text = "".join(ch for ch in (value or "") if ch.isprintable())
    return text.strip()[:limit]


def username_for(identity: ExternalIdentity) -> str:
    """A username candidate: the provider's, reduced to safe characters, 64 at most."""
    base = _USERNAME_OK.sub("-", _clean(identity.username, 200)).strip("-.") or "user"
    return base[:64]


def _unique_username(uow: UnitOfWork, identity: ExternalIdentity) -> str:
    base = username_for(identity)
    taken = uow.session.execute(select(User.id).where(User.username == base)).first()
    if taken is None:
        return base
    # A local account (or another identity) has that name: never link to it; suffix
    # a stable hash of the identity instead.
    digest = hashlib.sha256(
        f"{identity.issuer}\0{identity.subject}".encode()
    ).hexdigest()[:10]
    return f"{base[:53]}-{digest}"


async def sign_in(
    db: DB,
    config: AppConfig,
    identity: ExternalIdentity,
    roles: list[str],
    ctx: WriteContext,
    *,
    replaces: str | None = None,
) -> tuple[str, UserSession, User]:
    """Find or create the user of `identity`, give it `roles`, open a session.

    Raises:
        NoRole: `roles` is empty (no group mapped and no default role): 403, audited.
        AuthenticationError: the linked user is disabled or deleted (401).
    """
    issuer = _clean(identity.issuer, 255)
    subject = _clean(identity.subject, 255)
    if not issuer or not subject:
        raise AuthenticationError("the identity provider named no user")
    if not roles:

        def denied(uow: UnitOfWork) -> None:
            uow.audit(
                "login_denied",
                "identities",
                f"{issuer}|{subject}"[:255],
                new={
                    "reason": "no_role",
                    "method": identity.method,
                    "groups": list(identity.groups)[:50],
                    "ip": ctx.ip,
                },
            )

        await run_tx_async(denied, db=db, ctx=ctx)
        raise NoRole(
            "you are signed in at the identity provider, but none of your groups "
            "gives access to Ballast: ask an administrator"
        )
    token = new_token()

    def run(uow: UnitOfWork) -> tuple[UserSession, User]:
        now = utcnow()
        link = uow.session.execute(
            select(UserIdentity).where(
                UserIdentity.issuer == issuer, UserIdentity.subject == subject
            )
        ).scalar_one_or_none()
        role_rows = list(
            uow.session.execute(select(Role).where(Role.name.in_(roles))).scalars()
        )
        email = _clean(identity.email, 255) or None
        display = _clean(identity.display_name, 128) or _clean(identity.username, 128)
        if link is None:
            user = User(
                username=_unique_username(uow, identity),
                email=email,
                display_name=display,
                password_hash=UNUSABLE_HASH,
                preferences={"theme": "auto", "language": "en", "timezone": "UTC"},
                roles=role_rows,
            )
            uow.session.add(user)
            uow.session.flush([user])
            uow.session.add(
                UserIdentity(
                    user_id=user.id,
                    issuer=issuer,
                    subject=subject,
                    created_at=now,
                    last_login_at=now,
                )
            )
            uow.audit(
                "user_created",
                "users",
                str(user.id),
                new={
                    "username": user.username,
                    "email": email,
                    "roles": sorted(r.name for r in role_rows),
                    "method": identity.method,
                    "issuer": issuer,
                },
            )
        else:
            user = uow.session.execute(
                select(User)
                .where(User.id == link.user_id)
                .options(selectinload(User.roles))
                .with_for_update()
            ).scalar_one()
            if not user.is_active or user.deleted_at is not None:
                raise AuthenticationError("account disabled")
            link.last_login_at = now
            old = {
                "email": user.email,
                "display_name": user.display_name,
                "roles": user.role_names,
            }
            user.email = email
            user.display_name = display or user.display_name
            user.roles = role_rows
            new = {
                "email": user.email,
                "display_name": user.display_name,
                "roles": sorted(r.name for r in role_rows),
            }
            changed = {k for k in old if old[k] != new[k]}
            if changed:
                user.version += 1
                uow.session.flush([user])
                uow.audit(
                    "update",
                    "users",
                    str(user.id),
                    old={k: old[k] for k in sorted(changed)},
                    new={
                        **{k: new[k] for k in sorted(changed)},
                        "method": identity.method,
                    },
                )
        session = open_session(
            uow,
            user,
            token,
            config=config,
            ctx=ctx.with_user(user.id),
            replaces=replaces,
            method=identity.method,
        )
        return session, user

    session, user = await run_tx_async(run, db=db, ctx=ctx)
    return token, session, user
