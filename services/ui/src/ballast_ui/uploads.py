"""The ui's routes for direct uploads (``/_ballast/uploads…``): the Data page's upload
element (``frontend/upload.js``) asks here; each route forwards to the state api's
``/v1/uploads`` with the session of the HttpOnly cookie, so the browser never holds a
token and never talks to the api. The file's bytes go from the browser straight to the
object store, to URLs the api presigned.

Stateless: every request carries all it needs (the upload's id, its parts), nothing is
kept in this process, so any ui replica answers any request of an upload.

- ``POST /_ballast/uploads``: begin one (`UploadCreate`) -> `UploadRead`.
- ``GET /_ballast/uploads/{id}``: the upload and the parts the store holds.
- ``POST /_ballast/uploads/{id}/parts``: presigned URLs (`UploadPartsRequest`).
- ``POST /_ballast/uploads/{id}/complete``: join and import (`UploadComplete`) ->
  `DatasetImport`.
- ``DELETE /_ballast/uploads/{id}``: abort.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ballast_common.config import load_config
from ballast_common.contracts import UploadComplete, UploadCreate, UploadPartsRequest
from ballast_common.errors import AppError
from ballast_ui.auth import COOKIE_NAME
from ballast_ui.client import ApiClient, ApiUnavailable, make_http

# A completion names at most 10,000 parts (~70 bytes each).
MAX_BODY = 1 << 20
M = TypeVar("M", bound=BaseModel)


_pools: dict[str, httpx.Client] = {}
_pools_lock = threading.Lock()


def _http(api_url: str) -> httpx.Client:
    """The process's connection pool to the api (no user state: the token is per call)."""
    with _pools_lock:
        if api_url not in _pools:
            _pools[api_url] = make_http(api_url, timeout=10.0)
        return _pools[api_url]


def close() -> None:
    """Close the connection pools (tests; a process simply exits)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def error_response(
    status: int, code: str, message: str, details: Mapping[str, Any] | None = None
) -> JSONResponse:
    """The ui routes' error answer (`details` as a mapping: the api's may hold any
    key, a 409's ``status`` too), never cached."""
    return JSONResponse(
        {"code": code, "message": message, "details": dict(details or {})},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def _body(request: Request, model: type[M]) -> M | JSONResponse:
    if not request.headers.get("content-type", "").startswith("application/json"):
        # JSON only: a cross-site form cannot send it without a CORS preflight.
        return error_response(415, "unsupported_media_type", "send application/json")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            return error_response(413, "payload_too_large", "the request is too large")
    try:
        return model.model_validate(json.loads(raw or b"{}"))
    except (ValueError, PydanticValidationError) as exc:
        problems = (
            [
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                for e in exc.errors()
            ]
            if isinstance(exc, PydanticValidationError)
            else ["body: not JSON"]
        )
        return error_response(
            422, "validation_error", "; ".join(problems), {"problems": problems}
        )


def _upload_id(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(request.path_params["upload_id"]))
    except ValueError:
        return None


async def _forward(request: Request, call: Callable[[ApiClient], Any]) -> Response:
    """Run `call` against the api as the cookie's user; its answer or error as JSON."""
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return error_response(401, "unauthenticated", "sign in again")
    api = ApiClient(_http(load_config().api_url), token, retries=1)
    try:
        result = await run_in_threadpool(call, api)
    except ApiUnavailable as exc:
        return error_response(503, exc.code, exc.message)
    except AppError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    if result is None:
        return Response(status_code=204, headers={"Cache-Control": "no-store"})
    assert isinstance(result, BaseModel)
    return JSONResponse(
        result.model_dump(mode="json"), headers={"Cache-Control": "no-store"}
    )


async def _forward_body(
    request: Request,
    model: type[M],
    call: Callable[[ApiClient, M, uuid.UUID | None], Any],
    *,
    upload: bool = True,
) -> Response:
    """Check the path's upload id (`upload`) and the JSON body, then forward
    ``call(api, body, upload_id)``."""
    upload_id = _upload_id(request) if upload else None
    if upload and upload_id is None:
        return error_response(404, "not_found", "no such upload")
    body = await _body(request, model)
    if isinstance(body, JSONResponse):
        return body
    return await _forward(request, lambda api: call(api, body, upload_id))


async def create(request: Request) -> Response:
    """Begin a direct upload."""
    return await _forward_body(
        request,
        UploadCreate,
        lambda api, body, _id: api.create_upload(body),
        upload=False,
    )


async def one(request: Request) -> Response:
    """Read (GET) or abort (DELETE) an upload."""
    upload_id = _upload_id(request)
    if upload_id is None:
        return error_response(404, "not_found", "no such upload")
    if request.method == "DELETE":
        return await _forward(request, lambda api: api.abort_upload(upload_id))
    return await _forward(request, lambda api: api.get_upload(upload_id))


async def parts(request: Request) -> Response:
    """Presigned URLs for some parts."""
    return await _forward_body(
        request,
        UploadPartsRequest,
        lambda api, body, upload_id: api.sign_upload_parts(str(upload_id), body),
    )


async def complete(request: Request) -> Response:
    """Join the parts and start the import."""
    return await _forward_body(
        request,
        UploadComplete,
        lambda api, body, upload_id: api.complete_upload(str(upload_id), body),
    )


ROUTES = [
    Route("/_ballast/uploads", create, methods=["POST"]),
    Route("/_ballast/uploads/{upload_id}", one, methods=["GET", "DELETE"]),
    Route("/_ballast/uploads/{upload_id}/parts", parts, methods=["POST"]),
    Route("/_ballast/uploads/{upload_id}/complete", complete, methods=["POST"]),
]
