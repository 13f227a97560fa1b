"""Trusted-header sign-in behind an authenticating proxy (oauth2-proxy and the like).

The proxy authenticates the user and passes who it is in request headers
(`auth.proxy.user_header` ...). Those headers are believed only when the connection's
own peer -- not an address named in X-Forwarded-For -- is one of
`security.trusted_proxies`. From anyone else they are ignored, logged
(`proxy_header_spoofed`) and audited (`proxy_header_rejected`), and the request is
refused (401). They are read nowhere else in the api.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from fastapi import Request

from ballast_api.auth.external import ExternalIdentity
from ballast_api.middleware import PEER_SCOPE_KEY
from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, WriteContext, run_tx_async
from ballast_common.errors import AuthenticationError
from ballast_common.telemetry import get_logger

log = get_logger(__name__)

# Issuer of the identities a trusted proxy vouches for (user_identities.issuer).
PROXY_ISSUER = "proxy"
_MAX_HEADER = 255


def peer_address(request: Request) -> str | None:
    """The connection's own peer (the proxy itself), never an X-Forwarded-For value."""
    peer = request.scope.get(PEER_SCOPE_KEY, request.scope.get("client"))
    if peer is None:
        return None
    host = peer[0]
    return str(host) if host else None


def is_trusted(address: str | None, networks: Iterable[str]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_HEADER or not value.isprintable():
        return None
    return value


async def identity_from_headers(
    request: Request, db: DB, config: AppConfig, ctx: WriteContext
) -> ExternalIdentity:
    """The identity the trusted proxy vouches for, or AuthenticationError (401)."""
    settings = config.auth.proxy
    peer = peer_address(request)
    user = _header(request, settings.user_header)
    if not is_trusted(peer, config.security.trusted_proxies):
        claimed = (request.headers.get(settings.user_header) or "")[:_MAX_HEADER]
        log.warning(
            "proxy_header_spoofed",
            peer=peer,
            header=settings.user_header,
            present=bool(claimed),
        )

        def record(uow: UnitOfWork) -> None:
            uow.audit(
                "proxy_header_rejected",
                "addresses",
                peer or "unknown",
                new={"peer": peer, "claimed_user": claimed or None, "ip": ctx.ip},
            )

        await run_tx_async(record, db=db, ctx=ctx)
        raise AuthenticationError(
            "sign-in headers are only accepted from a trusted proxy"
        )
    if user is None:
        raise AuthenticationError(
            f"the authenticating proxy sent no {settings.user_header} header"
        )
    email = _header(request, settings.email_header)
    groups_raw = request.headers.get(settings.groups_header) or ""
    groups = tuple(g.strip() for g in groups_raw.split(",") if g.strip())[:200]
    return ExternalIdentity(
        issuer=PROXY_ISSUER,
        subject=user,
        username=user,
        email=email,
        display_name=_header(request, settings.name_header) or user,
        groups=groups,
        method="proxy",
    )
