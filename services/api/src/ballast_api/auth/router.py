from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ballast_api.auth import service
from ballast_api.auth.throttle import ThrottleDep
from ballast_api.deps import CurrentPrincipal, DBDep, SettingsDep, WriteCtxDep
from ballast_common.contracts import LoginRequest, SessionRead, UserRead
from ballast_common.db import run_tx_async
from ballast_common.models import User
from ballast_common.security import permissions_for

router = APIRouter(prefix="/sessions", tags=["sessions"])


def _presented_token(request: Request) -> str | None:
    # Read by hand, not declared: login needs no token, it only ends one it is given.
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def user_read(user: User) -> UserRead:
    roles = user.role_names
    return UserRead(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        email=user.email,
        roles=roles,
        permissions=sorted(str(p) for p in permissions_for(roles)),
        preferences=dict(user.preferences or {}),
    )


@router.post(
    "",
    response_model=SessionRead,
    status_code=201,
    responses={
        401: {"description": "Wrong username or password, or account disabled"},
        429: {
            "description": "Too many failed logins for this account or from this "
            "address: retry after `Retry-After` seconds"
        },
    },
)
async def create_session(
    body: LoginRequest,
    request: Request,
    db: DBDep,
    config: SettingsDep,
    ctx: WriteCtxDep,
    throttle: ThrottleDep,
) -> SessionRead:
    """Log in with username and password; returns an opaque bearer token.

    A session token sent along (Authorization: Bearer) is ended: login rotates it.
    """
    token, session, user = await service.login(
        db,
        config,
        body.username,
        body.password,
        ctx,
        throttle=throttle,
        replaces=_presented_token(request),
    )
    return SessionRead(
        token=token,
        session_id=session.id,
        expires_at=session.expires_at,
        idle_timeout_s=config.security.session_idle_timeout_s,
        user=user_read(user),
    )


@router.get("/me", response_model=UserRead)
async def me(principal: CurrentPrincipal, db: DBDep) -> UserRead:
    """The logged-in user, with roles and permissions."""
    return user_read(await service.load_user(db, principal.user_id))


@router.delete("/current", status_code=204)
async def delete_session(
    principal: CurrentPrincipal, db: DBDep, ctx: WriteCtxDep
) -> Response:
    """Log out: end the current session."""
    await service.logout(db, principal.session_id, ctx)
    return Response(status_code=204)


@router.delete("", status_code=204)
async def delete_my_sessions(
    principal: CurrentPrincipal, db: DBDep, ctx: WriteCtxDep
) -> Response:
    """Sign out everywhere: end every session of the logged-in user, this one too."""
    await run_tx_async(
        lambda uow: service.revoke_all(uow, principal.user_id, by="self"),
        db=db,
        ctx=ctx,
    )
    return Response(status_code=204)
