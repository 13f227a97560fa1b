"""The ui's route for export downloads: ``GET /_ballast/exports/{kind}/{id}?format=``.

The Data and Analysis pages' download links (`ballast_ui.downloads`) point here. The
route forwards to the state api's export with the session of the HttpOnly cookie (the
browser never holds a token, never talks to the api) and streams the api's file to the
browser as it comes, never holding it whole.

Stateless: the URL names everything (what, which, which format), nothing is kept in
this process, so any ui replica serves any click, with or without session affinity.

- ``kind``: ``datasets`` (the api's ``/v1/datasets/{id}/export``) or ``jobs`` (a
  completed job's result: ``/v1/jobs/{id}/result/export``); anything else is 404.
- ``id``: a UUID, else 404.
- ``format``: ``csv`` (the default), ``xlsx`` or ``parquet``, else 422.

Answers: the api's file with its status, Content-Type and Content-Disposition
(``attachment``), ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff``. No
cookie: 401. The api's refusals (401, 403, 404, 409, 422) come back as JSON in the shape
of the upload routes (``{"code", "message", "details"}``); the api unreachable or
failing (5xx, 429): 503 with ``Retry-After``.

The route is also served under Streamlit's ``server.baseUrlPath`` (the links are
absolute paths under it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping

import anyio
import httpx
import streamlit as st
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ballast_common.config import load_config
from ballast_common.telemetry.tracing import configure_tracing, instrument_httpx_client
from ballast_ui.auth import COOKIE_NAME
from ballast_ui.client import ApiUnavailable, error_from_response
from ballast_ui.uploads import error_response

PATH = "/_ballast/exports/{kind}/{item_id}"
# The api's export of each kind (under /v1), by id.
KINDS: Mapping[str, str] = {
    "datasets": "/datasets/{id}/export",
    "jobs": "/jobs/{id}/result/export",
}
FORMATS = ("csv", "xlsx", "parquet")
# The api writes a whole Excel workbook before its first byte (minutes for a large
# table), so reads may wait long; connecting may not.
TIMEOUT = httpx.Timeout(10.0, connect=2.0, read=600.0)
# An error answer of the api is a small JSON body; more is not read.
MAX_ERROR_BODY = 64 << 10
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# The api's headers a file keeps (Content-Length only when the bytes are as sent).
PASSED = ("content-type", "content-disposition", "content-length")

# Connection pools to the api, per api URL, of each event loop serving requests (a ui
# process has one; a pool cannot move between loops). No user state: the token is per
# call.
_pools: dict[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = {}


def _client(api_url: str) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    for other in [other for other in _pools if other.is_closed()]:
        del _pools[other]  # a finished loop's (tests: one loop per client)
    pools = _pools.setdefault(loop, {})
    if api_url not in pools:
        client = httpx.AsyncClient(
            base_url=api_url.rstrip("/") + "/v1",
            timeout=TIMEOUT,
            # The file as the api wrote it: nothing to decode and encode again.
            headers={"User-Agent": "ballast-ui", "Accept-Encoding": "identity"},
        )
        configure_tracing("ui")
        instrument_httpx_client(client)
        pools[api_url] = client
    return pools[api_url]


async def aclose() -> None:
    """Close the running loop's connection pools (tests; a process simply exits)."""
    for pool in _pools.pop(asyncio.get_running_loop(), {}).values():
        await pool.aclose()


def base_path() -> str:
    """Streamlit's ``server.baseUrlPath`` as ``/a/b`` (``""`` when at the root)."""
    configured = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{configured}" if configured else ""


def _unavailable(message: str, retry_after: str = "1") -> Response:
    response = error_response(503, "unavailable", message)
    response.headers["Retry-After"] = retry_after
    return response


class _Relay(StreamingResponse):
    """The api's file, streamed; the api's response is closed however this one ends
    (sent, failed, or cancelled when the browser went away)."""

    def __init__(self, upstream: httpx.Response, headers: Mapping[str, str]) -> None:
        super().__init__(self._chunks(upstream), upstream.status_code, headers)
        self._upstream = upstream

    @staticmethod
    async def _chunks(upstream: httpx.Response) -> AsyncIterator[bytes]:
        # An api failing halfway raises here: the browser's connection is cut and its
        # download fails, instead of ending as if the file were whole.
        async for chunk in upstream.aiter_raw():
            if chunk:
                yield chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()


def _file_headers(
    upstream: httpx.Response, kind: str, item: uuid.UUID, fmt: str
) -> dict[str, str]:
    headers = {
        name: upstream.headers[name] for name in PASSED if name in upstream.headers
    }
    if "content-encoding" in upstream.headers:
        # Not asked for, but sent: passed on as it is, with its length.
        headers["content-encoding"] = upstream.headers["content-encoding"]
    disposition = headers.get("content-disposition", "")
    if not disposition.lower().startswith("attachment"):
        # Always a download, never shown inline by the browser.
        headers["content-disposition"] = (
            f'attachment; filename="{kind.removesuffix("s")}-{item}.{fmt}"'
        )
    headers.setdefault("content-type", "application/octet-stream")
    return {**headers, **SECURITY_HEADERS}


async def _refusal(upstream: httpx.Response) -> Response:
    """The api's error answer as the upload routes' JSON error."""
    body = b""
    try:
        async for chunk in upstream.aiter_raw():
            body += chunk
            if len(body) > MAX_ERROR_BODY:
                body = b""
                break
    except httpx.HTTPError:
        body = b""
    finally:
        await upstream.aclose()
    kept = (
        {"retry-after": upstream.headers["retry-after"]}
        if "retry-after" in upstream.headers
        else {}
    )
    exc = error_from_response(
        httpx.Response(upstream.status_code, headers=kept, content=body)
    )
    if isinstance(exc, ApiUnavailable):
        seconds = exc.retry_after if exc.retry_after and exc.retry_after > 0 else 1
        return _unavailable(
            "the state api is unavailable; try again in a moment",
            str(max(1, round(seconds))),
        )
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def export(request: Request) -> Response:
    """Stream the export named by the URL, as the cookie's user."""
    prefix = request.path_params.get("prefix")
    if prefix is not None and f"/{prefix.strip('/')}" != base_path():
        return error_response(404, "not_found", "no such export")
    kind = str(request.path_params["kind"])
    if kind not in KINDS:
        return error_response(
            404, "not_found", f"no such export: {kind!r} (datasets or jobs)"
        )
    try:
        item = uuid.UUID(str(request.path_params["item_id"]))
    except ValueError:
        return error_response(
            404, "not_found", f"no such {kind.removesuffix('s')}: the id is not a UUID"
        )
    formats = request.query_params.getlist("format") or ["csv"]
    if len(formats) != 1 or formats[0] not in FORMATS:
        problem = "format: one of csv, xlsx or parquet"
        return error_response(422, "validation_error", problem, {"problems": [problem]})
    fmt = formats[0]
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return error_response(401, "unauthenticated", "sign in again")
    client = _client(load_config().api_url)
    sent = client.build_request(
        "GET",
        KINDS[kind].format(id=item),
        params={"format": fmt},
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        upstream = await client.send(sent, stream=True)
    except httpx.TimeoutException:
        return _unavailable("the state api did not answer in time")
    except httpx.TransportError as exc:
        return _unavailable(f"the state api is unreachable ({type(exc).__name__})")
    if upstream.status_code >= 400:
        return await _refusal(upstream)
    if not 200 <= upstream.status_code < 300:
        await upstream.aclose()
        return _unavailable(f"the state api answered {upstream.status_code}")
    headers = _file_headers(upstream, kind, item, fmt)
    if request.method == "HEAD":
        await upstream.aclose()
        return Response(status_code=upstream.status_code, headers=headers)
    return _Relay(upstream, headers)


ROUTES = [
    Route(PATH, export, methods=["GET"]),
    # Under server.baseUrlPath (checked per request: it is read when the server starts).
    Route("/{prefix:path}" + PATH, export, methods=["GET"]),
]
