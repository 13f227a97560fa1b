"""Refuse input no backend can store, before any route sees it (pure ASGI).

- NUL characters (PostgreSQL text and jsonb refuse them) and lone UTF-16 surrogates
  (not encodable as UTF-8) in the path, any query parameter, or anywhere in a JSON
  body, keys included: 422 naming the field.
- `NaN`, `Infinity`, `-Infinity` literals (not JSON; Python's parser accepts them): 422.
- JSON bodies that are not UTF-8 (RFC 8259): 422, like any other malformed JSON.
- JSON bodies over `api.max_json_body_kb`: 413, counted while reading so a lying or
  missing Content-Length does not matter.
- OPTIONS answers 204 with the `Allow` header of the matched path (404 if none).

The fast path costs one regex scan of the raw body; the JSON is parsed here only when
that scan finds something suspicious, to say exactly where.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ballast_api.errors import allowed_methods, error_response, validation_response
from ballast_common.config import DEFAULT_MAX_BODY_KB

# A NUL or surrogate escape, or a non-finite literal, anywhere in the raw JSON text.
_SUSPICIOUS = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|NaN|Infinity|\x00")
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _NonFinite:
    """Stands in for a NaN/Infinity literal while walking the parsed body."""


_NON_FINITE = _NonFinite()


def _char_problem(text: str) -> str | None:
    match = _BAD_CHAR.search(text)
    if match is None:
        return None
    return (
        "must not contain a NUL character"
        if match.group() == "\x00"
        else "must not contain an unpaired surrogate"
    )


def _field(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path) or "body"


def find_problem(value: Any, path: list[str | int]) -> tuple[str, str] | None:
    """The first (field, message) in `value` no backend can store, else None."""
    if isinstance(value, str):
        problem = _char_problem(value)
        return (_field(path), problem) if problem else None
    if value is _NON_FINITE:
        return _field(path), "NaN and Infinity are not valid JSON numbers"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _char_problem(key)
            if problem:
                return _field(path), f"keys {problem}"
            found = find_problem(item, [*path, key])
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_problem(item, [*path, index])
            if found:
                return found
    return None


def _parse(body: bytes) -> Any:
    return json.loads(body, parse_constant=lambda _literal: _NON_FINITE)


def _max_body(scope: Scope) -> int:
    config = getattr(getattr(scope.get("app"), "state", None), "config", None)
    kb = config.api.max_json_body_kb if config is not None else DEFAULT_MAX_BODY_KB
    return int(kb) * 1024


def is_json(scope: Scope) -> bool:
    """Whether the request says its body is JSON (`application/json`, `*+json`)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind = bytes(value).split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app `body` (already read, whole) first, then `receive`'s
    own messages (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class InputGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            await self._options(scope, receive, send)
            return
        problem = self._url_problem(scope)
        if problem is not None:
            await validation_response([problem])(scope, receive, send)
            return
        if method not in _BODY_METHODS or not is_json(scope):
            await self.app(scope, receive, send)
            return
        max_body = _max_body(scope)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body:
                await error_response(
                    413,
                    "payload_too_large",
                    f"JSON body larger than {max_body // 1024} KiB",
                    {"limit_bytes": max_body},
                )(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = ("body", "body", f"not UTF-8 (byte {exc.start})")
            await validation_response([problem])(scope, receive, send)
            return
        if _SUSPICIOUS.search(body):
            try:
                found = find_problem(_parse(body), [])
            except ValueError:
                found = None  # malformed JSON: the route's own parser says where
            if found is not None:
                await validation_response([("body", *found)])(scope, receive, send)
                return
        await self.app(scope, replaying(body, receive), send)

    @staticmethod
    def _url_problem(scope: Scope) -> tuple[str, str, str] | None:
        problem = _char_problem(scope.get("path", ""))
        if problem:
            return "path", "path", problem
        query = scope.get("query_string", b"").decode("latin-1")
        if "%" not in query and "\x00" not in query:
            return None
        for name, value in parse_qsl(query, keep_blank_values=True):
            problem = _char_problem(name) or _char_problem(value)
            if problem:
                return "query", name.replace("\x00", ""), problem
        return None

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = allowed_methods(scope.get("app"), scope.get("path", ""))
        if not methods:
            await error_response(404, "not_found", "not found")(scope, receive, send)
            return
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
