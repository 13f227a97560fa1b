"""The OpenAPI document, completed with every error status a route can answer.

FastAPI documents only 422 (in its own shape, which the api never sends). This adds,
per operation, the statuses its dependencies and parameters make possible, each with
the one error schema `ErrorBody` {code, message, details, trace_id}:

- 401 for a bearer-authenticated route, 403 when it checks a permission;
- 404 for a route with path parameters; 409 for an authenticated write (version
  conflicts, a write id in use); 413 for a JSON body; 422 for any input;
- 503 for every route that reaches the database (all but /healthz), with Retry-After;
  a declared 429 (login throttling) has Retry-After too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from ballast_common.contracts import ErrorBody

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_DESCRIPTIONS = {
    "401": "Missing, invalid or expired session token",
    "403": "The session lacks the permission this route needs",
    "404": "No such resource",
    "409": "Conflict: a stale version, or the write id is being used right now",
    "413": "The request body is larger than the api accepts",
    "422": "Invalid input; `details.fields` names each field",
    "503": "A backend is unavailable or busy: retry after `Retry-After` seconds",
}
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NO_DATABASE = frozenset({"/healthz"})


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _calls(route: RouteContext) -> set[str]:
    return {
        getattr(d.call, "__name__", "")
        for d in _dependencies(route.dependant)
        if d.call
    }


def error_statuses(route: RouteContext, operation: dict[str, Any]) -> set[str]:
    """The error statuses `route` can answer."""
    calls = _calls(route)
    statuses = set()
    secured = bool(operation.get("security"))
    if secured:
        statuses.add("401")
    if any(name.startswith("require_") for name in calls):
        statuses.add("403")
    if route.dependant.path_params:
        statuses.add("404")
    if secured and set(route.methods or ()) & _WRITES:
        statuses.add("409")
    if "requestBody" in operation:
        statuses.update({"413", "422"})
    if operation.get("parameters"):
        statuses.add("422")
    if route.path_format not in _NO_DATABASE:
        statuses.add("503")
    return statuses


def _error_response(status: str, existing: dict[str, Any] | None) -> dict[str, Any]:
    response = {
        "description": (existing or {}).get("description") or _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status in ("503", "413", "429"):
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"},
            }
        }
    return response


def complete(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error statuses of every route of `app` to `schema` (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation["responses"]
            declared = {s for s in responses if s.isdigit() and int(s) >= 400}
            for status in error_statuses(route, operation) | declared:
                if status == "503" and route.path_format == "/readyz":
                    continue  # its own body: which dependency is down
                responses[status] = _error_response(status, responses.get(status))
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                app,
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                ),
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


__all__ = ["complete", "error_statuses", "install"]
