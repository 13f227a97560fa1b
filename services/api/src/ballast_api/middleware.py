"""Request context, access log and HTTP metrics as one pure-ASGI middleware.

Pure ASGI (not BaseHTTPMiddleware): no extra task per request, and the context vars set
here are visible to the endpoint. An incoming `traceparent` and `X-Correlation-ID` are
honoured; both go back on the response so callers can correlate. With tracing on
(`OTEL_*`), FastAPI's native telemetry makes the request's server span (named by route)
and the database engines, Redis, the object store and job publishing are traced; off,
the request still gets W3C ids from the SDK's generator (`request_span`) and nothing is
recorded. A correlation id that
carries personal data or a secret is replaced by a fresh one (`bind_request_context`):
it would otherwise be logged, echoed and audited as is.

`ClientAddressMiddleware` decides the client's address and scheme: X-Forwarded-For and
X-Forwarded-Proto count only when the peer is one of `security.trusted_proxies`.

The access line names the route template and, PII-masked, the raw path and query
string: a card number or an e-mail in a URL never reaches the log.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ballast_api.errors import error_response
from ballast_common.telemetry import (
    bind_request_context,
    configure_tracing,
    get_logger,
    http_metrics,
    instrument,
    instrument_engine,
    log_error,
    mask_value,
    request_span,
    traceparent,
    tracing_enabled,
)
from ballast_common.telemetry.tracing import (
    instrument_celery_publish,
    quiet_if_untraced,
)

log = get_logger("ballast_api.access")

# Scope key of the connection's own peer (host, port), set by ClientAddressMiddleware.
PEER_SCOPE_KEY = "ballast.peer"

# Longer paths and query strings are cut in the access line (after masking).
_MAX_LOGGED_URL_PART = 2048

# Masked paths remembered per process: how many, and up to which length.
_MASKED_PATHS = 4096
_CACHED_PATH_LENGTH = 256
# Metric children remembered per middleware (beyond that, looked up each time).
_METRIC_CHILDREN = 1024

_CORRELATION_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"
)


def _clean_correlation(value: str | None) -> str | None:
    if value and len(value) <= 64 and set(value) <= _CORRELATION_OK:
        return value
    return None


def route_template(scope: Scope) -> str:
    """The matched route as a template (`/v1/projects/{project_id}`), for metric labels.

    Raw paths would make label cardinality unbounded; unmatched requests share one label.
    """
    if scope.get("route") is None:
        return "unmatched"
    path: str = scope.get("path", "")
    params: dict[str, Any] = scope.get("path_params") or {}
    if not params:
        return path
    segments = path.split("/")
    by_value = {str(v): k for k, v in params.items()}
    return "/".join("{" + by_value[s] + "}" if s in by_value else s for s in segments)


@functools.lru_cache(maxsize=_MASKED_PATHS)
def _masked_cached(path: str) -> str:
    return mask_value(path)[:_MAX_LOGGED_URL_PART]


def _masked_path(path: str) -> str:
    """`path` masked for the access line; a client's paths repeat (one form saved
    again and again), so short ones are masked once per process, not per request."""
    if len(path) > _CACHED_PATH_LENGTH:
        return mask_value(path)[:_MAX_LOGGED_URL_PART]
    return _masked_cached(path)


def logged_url(scope: Scope) -> dict[str, str]:
    """The request's path and query string for the access line, PII-masked.

    The query string is masked as sent (URL-encoded); the masker also checks it
    decoded, so `card=4111+1111+1111+1111` or `email=alice%40example.com` are caught.
    """
    out = {"path": _masked_path(str(scope.get("path", "")))}
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    if query:
        out["query"] = mask_value(query)[:_MAX_LOGGED_URL_PART]
    return out


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, service: str = "api") -> None:
        self.app = app
        self.service = service
        self.metrics = http_metrics()
        # (method, route, status) -> (request counter, duration histogram) children:
        # `labels()` hashes and locks on every call, and the same few repeat.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._traced = False
        # Built with the app's middleware stack, before its first request (lifespan).
        configure_tracing(service)

    def _metric_children(
        self, method: str, template: str, code: str
    ) -> tuple[Any, Any]:
        key = (method, template, code)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(self.service, method, template, code),
                self.metrics.duration.labels(self.service, method, template),
            )
            if len(self._children) < _METRIC_CHILDREN:
                self._children[key] = children
        return children

    def _instrument(self, scope: Scope) -> None:
        """On the first request (the lifespan has opened the database by then), when
        tracing is on: the app's database engines, job publishing, Redis, the object
        store and outbound httpx calls traced."""
        self._traced = True
        if not tracing_enabled():
            return
        instrument("redis", "botocore", "httpx")
        state = getattr(scope.get("app"), "state", None)
        db = getattr(state, "db", None)
        for name in ("engine", "async_engine"):
            engine = getattr(db, name, None)
            if engine is not None:
                instrument_engine(engine)
        instrument_celery_publish()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._traced:
            self._instrument(scope)
        # Of a repeated header, the first counts, as everywhere else in the app.
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in reversed(scope["headers"])
        }
        # The peer, or the client a trusted proxy named (ClientAddressMiddleware runs first).
        client = scope.get("client")
        ip = client[0] if client else None
        status = {"code": 500}
        start = time.perf_counter()
        with (
            quiet_if_untraced(scope),
            request_span(headers) as (trace_id, span_id),
            bind_request_context(
                trace_id=trace_id,
                span_id=span_id,
                correlation_id=_clean_correlation(headers.get("x-correlation-id")),
                ip=ip,
                user_agent=headers.get("user-agent"),
            ) as ids,
        ):

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                    status["started"] = 1
                    out = MutableHeaders(scope=message)
                    out["X-Correlation-ID"] = ids["correlation_id"] or ""
                    out["traceparent"] = traceparent() or ""
                await send(message)

            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as exc:
                # Handled here, inside the request context, so the 500 carries the trace id.
                if status.get("started"):
                    raise
                status["code"] = 500
                trace_id = log_error(exc, {"where": "api", "method": scope["method"]})
                response = error_response(
                    500,
                    "internal_error",
                    f"internal error; quote trace id {trace_id} when reporting it",
                )
                await response(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - start
                template = route_template(scope)
                method = scope["method"]
                counter, histogram = self._metric_children(
                    method, template, str(status["code"])
                )
                counter.inc()
                histogram.observe(elapsed)
                if template not in ("/healthz", "/metrics"):
                    log.info(
                        "request",
                        method=method,
                        route=template,
                        **logged_url(scope),
                        status=status["code"],
                        duration_ms=round(elapsed * 1000, 2),
                    )


class ClientAddressMiddleware:
    """The client's address and scheme, believing forwarded headers only from trusted proxies.

    uvicorn's own ProxyHeadersMiddleware does the work (the rightmost address in
    X-Forwarded-For that is not itself a trusted proxy is the client), with
    `security.trusted_proxies` as its allow-list; empty, no peer is trusted. It is built
    on the first request, from the configuration the lifespan loaded. The api's entry
    point turns uvicorn's server-level proxy handling off, so this is the only place
    those headers are read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._proxied: ASGIApp | None = None

    def _build(self, scope: Scope) -> ASGIApp | None:
        config = getattr(scope["app"].state, "config", None)
        if config is None:
            return None  # not started yet: believe nobody, decide once configured
        trusted = list(config.security.trusted_proxies)
        if not trusted:
            return self.app
        # uvicorn types ASGI apps with its own (narrower) TypedDicts; the shape is the same.
        proxied: ASGIApp = ProxyHeadersMiddleware(self.app, trusted_hosts=trusted)  # type: ignore[arg-type,assignment]
        return proxied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # The TCP peer itself, before X-Forwarded-For may replace `client`: trusted-header
        # sign-in (auth/proxy.py) believes only a peer that is a trusted proxy.
        scope[PEER_SCOPE_KEY] = scope.get("client")
        if self._proxied is None:
            self._proxied = self._build(scope)
        await (self._proxied or self.app)(scope, receive, send)
