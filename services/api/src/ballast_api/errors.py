"""One error shape everywhere: {code, message, details, trace_id}."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ballast_common.db import RETRY_AFTER_S, is_transient
from ballast_common.errors import AppError, TransientError
from ballast_common.telemetry import log_error, mask_data, trace_id_var

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "details": mask_data(details or {}),
        "trace_id": trace_id_var.get(),
    }
    return JSONResponse(body, status_code=status, headers=headers)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return app_error_response(exc)


def app_error_response(exc: AppError) -> JSONResponse:
    """The answer to `exc` (its status, code, message and masked details; 5xx logged)."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, TransientError):
        headers = _retry_after(exc.retry_after)
    if exc.status >= 500:
        log_error(exc, {"code": exc.code})
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


def validation_response(problems: list[tuple[str, str, str]]) -> JSONResponse:
    """422 naming each field: `problems` holds (location, field, message) triples."""
    fields = list(dict.fromkeys(name for _where, name, _msg in problems))
    errors = [
        {"field": name, "in": where, "message": message}
        for where, name, message in problems
    ]
    return error_response(
        422,
        "validation_error",
        f"invalid input: {', '.join(fields)}",
        {"fields": fields, "errors": errors},
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        # Drop the "body"/"query" prefix for the field name, keep it as the location.
        where, name = (
            (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("body", ".".join(loc))
        )
        problems.append((where, name or where, str(err.get("msg", "invalid"))))
    return validation_response(problems)


def allowed_methods(app: Any, path: str) -> set[str]:
    """Every method some route of `app` answers at `path` (empty: no such path)."""
    methods: set[str] = set()
    for route in iter_route_contexts(getattr(app, "routes", ())):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return methods


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        # The router names only the first route matching the path; list them all.
        methods = allowed_methods(request.app, request.url.path) | {"OPTIONS"}
        headers["Allow"] = ", ".join(sorted(methods))
    return error_response(exc.status_code, code, message, None, headers or None)


def _retry_after(seconds: float | None) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds or RETRY_AFTER_S)))}


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    response = database_error_response(exc)
    if response is None:
        raise exc
    return response


def database_error_response(exc: Exception) -> JSONResponse | None:
    """A database error that escaped the retrying runners: 503 if retrying may help,
    else None (a fault: the caller lets it become a 500)."""
    if not (isinstance(exc, SQLAlchemyTimeoutError) or is_transient(exc)):
        return None
    log_error(exc, {"code": "unavailable"})
    return error_response(
        503,
        "unavailable",
        "the database is temporarily unavailable: try again shortly",
        headers=_retry_after(None),
    )


def handled_error_response(exc: Exception) -> JSONResponse | None:
    """What the app's exception handlers answer to `exc` (an `AppError`, a transient
    database error), for code that runs outside FastAPI's routing; None: a fault."""
    if isinstance(exc, AppError):
        return app_error_response(exc)
    if isinstance(exc, SQLAlchemyError):
        return database_error_response(exc)
    return None


def install(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
