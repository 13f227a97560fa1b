"""PUT /v1/forms/{form_id} on PostgreSQL past FastAPI's router (pure ASGI).

A save is the api's hottest request. On this path FastAPI's own machinery - matching
the path against every route, solving the dependency graph, the request/response
wrappers, serializing through the response model - cost more CPU than the save's one
SQL statement (`forms/fast.py`). `HotFormSave` sits innermost among the api's
middlewares, so the client address, security headers, request context (ids, access
line, metrics) and input guard (body size, NUL, non-finite numbers, UTF-8) are applied
to it exactly as to every other request; then it does what the route does, directly:

- bearer token -> `authenticate` (the session cache) -> `forms:write`, else 401/403 with
  the same bodies as the route;
- the body parsed by `FormSave` itself, the Idempotency-Key checked as the route does;
- the one-statement save, the cache bust, the `FormRead` answer (200/201).

Everything else goes to the route, unchanged: SQLite, a project's form (its access is
checked in a transaction), a body or header the route would refuse (so every error
keeps the route's wording), a missing or non-bearer Authorization, and the outcomes the
statement leaves to the general path (a replay of a recorded write id, a stale version).
The route sees the request as sent: the body read here is handed on.

Metrics and traces name the request by its route template, as the router would.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import iter_route_contexts
from pydantic import ValidationError as PydanticValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from ballast_api import policy
from ballast_api.auth.service import authenticate
from ballast_api.deps import check_permission, valid_idempotency_key, write_context_of
from ballast_api.errors import handled_error_response
from ballast_api.forms.fast import save_form
from ballast_api.input_guard import is_json, replaying
from ballast_common.contracts.forms import FORM_ID_MAX_LENGTH, FORM_ID_PATTERN, FormSave
from ballast_common.db import DB, bust_after_commit
from ballast_common.security import Permission
from ballast_common.telemetry import context as tctx

PREFIX = "/v1/forms/"
TEMPLATE = "/v1/forms/{form_id}"
# The route's own constraints on the path parameter (and {form_id}: one path segment).
_FORM_ID = re.compile(FORM_ID_PATTERN)
# Scope key: the statement ran here and left the request to the general path.
DECLINED = "ballast.hot_save_declined"

try:  # FastAPI's native telemetry names the server span by the route it selected.
    from fastapi.telemetry import _api as _fastapi_telemetry
except (
    ImportError
):  # pragma: no cover - another FastAPI: the span keeps its method name
    _fastapi_telemetry = None  # type: ignore[assignment]
_route_selected: Any = getattr(_fastapi_telemetry, "_route_selected", None)


def form_id_of(scope: Scope) -> str | None:
    """The form id when `scope` is a PUT the hot path may take, else None."""
    if scope["type"] != "http" or scope["method"] != "PUT":
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    form_id = path[len(PREFIX) :]
    if (
        not 1 <= len(form_id) <= FORM_ID_MAX_LENGTH
        or "/" in form_id
        or not _FORM_ID.match(form_id)
        or policy.project_of_form(form_id) is not None
    ):
        return None
    return form_id


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers; of a repeated one, the first (as the route reads it)."""
    return {bytes(k): bytes(v) for k, v in reversed(scope["headers"])}


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip().decode("latin-1")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (the input guard has bounded it), or None if the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class HotFormSave:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None

    def _mark_route(self, scope: Scope, form_id: str) -> None:
        """What the router records of the route it selected (metrics, span name)."""
        if self._route is None:
            self._route = find_route(scope.get("app"))
        scope["route"] = self._route
        scope["path_params"] = {"form_id": form_id}
        if _route_selected is not None:
            _route_selected(scope=scope, path=TEMPLATE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        form_id = form_id_of(scope)
        state = getattr(scope.get("app"), "state", None)
        db: DB | None = getattr(state, "db", None)
        if form_id is None or state is None or db is None or db.is_sqlite:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        token = _bearer(headers)
        key = headers.get(b"idempotency-key")
        write_id = key.decode("latin-1") if key is not None else None
        if (
            token is None
            or not is_json(scope)
            or (write_id is not None and not valid_idempotency_key(write_id))
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        try:
            form = FormSave.model_validate_json(body)
        except PydanticValidationError:
            await self.app(scope, replaying(body, receive), send)
            return
        self._mark_route(scope, form_id)
        try:
            principal = check_permission(
                await authenticate(db, state.config, token), Permission.FORMS_WRITE
            )
            tctx.user_id_var.set(str(principal.user_id))
            client = scope.get("client")
            ctx = write_context_of(
                client[0] if client else None,
                headers.get(b"user-agent", b"").decode("latin-1") or None,
            )
            saved = await save_form(db, ctx, principal.user_id, form_id, form, write_id)
            if saved is not None:
                await bust_after_commit(saved[2])
        except Exception as exc:
            # Answered as the app's exception handlers answer the route; a fault is
            # left to the request context (a 500 carrying the trace id).
            answer = handled_error_response(exc)
            if answer is None:
                raise
            await answer(scope, receive, send)
            return
        if saved is None:  # a replay or a stale version: the route answers those
            scope[DECLINED] = True
            await self.app(scope, replaying(body, receive), send)
            return
        status, result, _touched = saved
        payload = result.model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(payload)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def find_route(app: Any) -> Any:
    """The api's PUT /v1/forms/{form_id} route (None in an app without it)."""
    for route in iter_route_contexts(getattr(app, "routes", ())):
        if getattr(route, "path_format", None) == TEMPLATE and "PUT" in (
            getattr(route, "methods", None) or ()
        ):
            return route
    return None
