"""Request dependencies as `Annotated` aliases (STYLE.md §2)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ballast_api.auth.service import authenticate
from ballast_api.principal import Principal
from ballast_common.config import AppConfig
from ballast_common.db import DB, WriteContext
from ballast_common.errors import AuthenticationError, PermissionDenied, ValidationError
from ballast_common.security import Permission
from ballast_common.telemetry import context as tctx


async def get_config(request: Request) -> AppConfig:
    config: AppConfig = request.app.state.config
    return config


async def get_database(request: Request) -> DB:
    db: DB = request.app.state.db
    return db


SettingsDep = Annotated[AppConfig, Depends(get_config)]
DBDep = Annotated[DB, Depends(get_database)]

# Declared as a security scheme so the OpenAPI document (and schemathesis) know about it.
bearer = HTTPBearer(
    auto_error=False, description="Opaque session token from POST /v1/sessions"
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def get_principal(request: Request, creds: BearerDep) -> Principal:
    if creds is None or not creds.credentials:
        raise AuthenticationError("missing bearer token: log in at POST /v1/sessions")
    principal = await authenticate(
        request.app.state.db, request.app.state.config, creds.credentials
    )
    tctx.user_id_var.set(str(principal.user_id))
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def check_permission(principal: Principal, permission: Permission) -> Principal:
    """`principal` if it holds `permission`, else PermissionDenied (403)."""
    if not principal.can(permission):
        raise PermissionDenied(
            f"permission {permission} required",
            details={"permission": str(permission), "roles": list(principal.roles)},
        )
    return principal


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that yields the principal if it holds `permission`, else 403."""

    async def check(principal: CurrentPrincipal) -> Principal:
        return check_permission(principal, permission)

    check.__name__ = f"require_{permission.replace(':', '_')}"
    return check


async def write_context(request: Request) -> WriteContext:
    """Who writes and from where, for the audit rows of this request.

    The address is the peer's, or what a trusted proxy says it is
    (`ClientAddressMiddleware`); a client's own X-Forwarded-For is never believed.
    """
    return write_context_of(
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )


def write_context_of(ip: str | None, user_agent: str | None) -> WriteContext:
    """The write context of the current request: its bound ids and user, `ip` (the
    decided client address) and `user_agent` (cut to 512 characters)."""
    user = tctx.user_id_var.get()
    return WriteContext(
        user_id=uuid.UUID(user) if user else None,
        correlation_id=tctx.correlation_id_var.get(),
        trace_id=tctx.trace_id_var.get(),
        ip=ip,
        user_agent=(user_agent or "")[:512] or None,
    )


WriteCtxDep = Annotated[WriteContext, Depends(write_context)]


async def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Client-generated write id: the same id twice has one effect.",
        ),
    ] = None,
) -> str | None:
    if idempotency_key is not None and not valid_idempotency_key(idempotency_key):
        raise ValidationError(
            "Idempotency-Key must be 1 to 100 printable ASCII characters",
            details={"fields": ["Idempotency-Key"]},
        )
    return idempotency_key


def valid_idempotency_key(key: str) -> bool:
    """1 to 100 printable ASCII characters, no surrounding blanks."""
    return (
        1 <= len(key) <= 100
        and key.isascii()
        and key.isprintable()
        and key.strip() == key
    )


WriteIdDep = Annotated[str | None, Depends(idempotency_key)]
