from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ballast_api.auth import external, handoff, service
from ballast_api.auth.oidc import OidcClient, claim_path, groups_of
from ballast_api.auth.proxy import identity_from_headers
from ballast_api.auth.throttle import ThrottleDep
from ballast_api.deps import CurrentPrincipal, DBDep, SettingsDep, WriteCtxDep
from ballast_common.config import AppConfig
from ballast_common.contracts import (
    HandoffCreated,
    HandoffRedeem,
    HandoffToken,
    LoginRequest,
    OidcAuthorization,
    OidcBegin,
    OidcCallback,
    SessionRead,
    SignInMethods,
    UserRead,
)
from ballast_common.db import run_tx_async
from ballast_common.errors import AuthenticationError, NotFoundError, PermissionDenied
from ballast_common.models import User, UserSession
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
    if not config.auth.local_accounts:
        raise PermissionDenied(
            "password sign-in is turned off here: use single sign-on",
            code="password_login_disabled",
        )
    token, session, user = await service.login(
        db,
        config,
        body.username,
        body.password,
        ctx,
        throttle=throttle,
        replaces=_presented_token(request),
    )
    return session_read(token, session, user, config)


def session_read(
    token: str, session: UserSession, user: User, config: AppConfig
) -> SessionRead:
    return SessionRead(
        token=token,
        session_id=session.id,
        expires_at=session.expires_at,
        idle_timeout_s=config.security.session_idle_timeout_s,
        user=user_read(user),
    )


@router.get("/methods", response_model=SignInMethods)
async def sign_in_methods(config: SettingsDep) -> SignInMethods:
    """How a user may sign in here (password, single sign-on, trusted proxy)."""
    auth = config.auth
    return SignInMethods(
        password=auth.local_accounts,
        oidc=auth.oidc.enabled,
        oidc_label=auth.oidc.display_name if auth.oidc.enabled else None,
        proxy=auth.proxy.enabled,
    )


def _oidc(request: Request, config: AppConfig) -> OidcClient:
    if not config.auth.oidc.enabled:
        raise NotFoundError("single sign-on (OIDC) is not configured here")
    client: OidcClient | None = getattr(request.app.state, "oidc_client", None)
    if client is None or client.config is not config.auth.oidc:
        client = OidcClient(
            config=config.auth.oidc,
            outbound=config.outbound.target("oidc"),
            secret_key=config.security.secret_key.get_secret_value(),
        )
        request.app.state.oidc_client = client
    return client


@router.post(
    "/oidc/authorize",
    response_model=OidcAuthorization,
    responses={
        404: {"description": "OIDC is not configured"},
        503: {"description": "The provider cannot be reached"},
    },
)
async def oidc_authorize(
    body: OidcBegin, request: Request, config: SettingsDep
) -> OidcAuthorization:
    """Start a single sign-on: the provider's authorization URL (code + PKCE).

    The sign-in can be finished only with the same `binding` secret, kept by the
    browser that begins it.
    """
    url = await _oidc(request, config).begin(body.binding)
    return OidcAuthorization(authorization_url=url)


@router.post(
    "/oidc",
    response_model=SessionRead,
    status_code=201,
    responses={
        401: {"description": "State, code or ID token not valid"},
        403: {"description": "No Ballast role for the user's groups"},
        404: {"description": "OIDC is not configured"},
        503: {"description": "The provider cannot be reached"},
    },
)
async def oidc_sign_in(
    body: OidcCallback,
    request: Request,
    db: DBDep,
    config: SettingsDep,
    ctx: WriteCtxDep,
) -> SessionRead:
    """Finish a single sign-on with the provider's code and state; opens a session.

    The api exchanges the code itself and verifies the ID token (signature, issuer,
    audience, expiry, nonce); roles come from `auth.oidc.role_claim`.
    """
    settings = config.auth.oidc
    claims = await _oidc(request, config).finish(body.code, body.state, body.binding)
    username = next(
        (
            str(claims[c])
            for c in settings.username_claims
            if isinstance(claims.get(c), str) and claims[c]
        ),
        str(claims["sub"]),
    )
    groups = groups_of(claim_path(claims, settings.role_claim))
    identity = external.ExternalIdentity(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        username=username,
        email=claims["email"] if isinstance(claims.get("email"), str) else None,
        display_name=claims["name"] if isinstance(claims.get("name"), str) else "",
        groups=tuple(groups),
        method="oidc",
    )
    token, session, user = await external.sign_in(
        db,
        config,
        identity,
        settings.roles_for(groups),
        ctx,
        replaces=_presented_token(request),
    )
    return session_read(token, session, user, config)


@router.post(
    "/proxy",
    response_model=SessionRead,
    status_code=201,
    responses={
        401: {"description": "Not from a trusted proxy, or no user header"},
        403: {"description": "No Ballast role for the user's groups"},
        404: {"description": "Trusted-header sign-in is not enabled"},
    },
)
async def proxy_sign_in(
    request: Request, db: DBDep, config: SettingsDep, ctx: WriteCtxDep
) -> SessionRead:
    """Sign in as the user an authenticating proxy names in its headers.

    Believed only from a peer in `security.trusted_proxies`; from anyone else the
    headers are ignored, logged and audited (401).
    """
    if not config.auth.proxy.enabled:
        raise NotFoundError("trusted-header sign-in is not enabled here")
    identity = await identity_from_headers(request, db, config, ctx)
    token, session, user = await external.sign_in(
        db,
        config,
        identity,
        config.auth.proxy.roles_for(list(identity.groups)),
        ctx,
        replaces=_presented_token(request),
    )
    return session_read(token, session, user, config)


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


@router.post(
    "/handoffs",
    response_model=HandoffCreated,
    status_code=201,
    responses={401: {"description": "No valid session token"}},
)
async def create_handoff(
    request: Request, principal: CurrentPrincipal, db: DBDep, config: SettingsDep
) -> HandoffCreated:
    """Park the caller's session token under a one-time nonce (valid 60 s).

    The ui gives the nonce to the browser, which trades it at any ui replica for its
    HttpOnly session cookie (`POST /v1/sessions/handoffs/redeem`).
    """
    token = _presented_token(request)
    if token is None:  # CurrentPrincipal took it from the header already
        raise AuthenticationError("no session token")
    nonce, expires_at, max_age = await handoff.issue(
        db, config, token, principal.session_id
    )
    return HandoffCreated(nonce=nonce, expires_at=expires_at, max_age_s=max_age)


@router.post(
    "/handoffs/redeem",
    response_model=HandoffToken,
    responses={400: {"description": "Unknown, already used or expired nonce"}},
)
async def redeem_handoff(
    body: HandoffRedeem, db: DBDep, config: SettingsDep
) -> HandoffToken:
    """Trade a hand-off nonce for its session token: once, within 60 s.

    Needs no token: the nonce is the credential (256 bits, single use).
    """
    token, max_age = await handoff.redeem(db, config, body.nonce)
    return HandoffToken(token=token, max_age_s=max_age)
