"""Request context, access log and HTTP metrics as one pure-ASGI middleware.

Pure ASGI (not BaseHTTPMiddleware): no extra task per request, and the context vars set
here are visible to the endpoint. An incoming `traceparent` and `X-Correlation-ID` are
honoured; both go back on the response so callers can correlate. A correlation id that
carries personal data or a secret is replaced by a fresh one (`bind_request_context`):
it would otherwise be logged, echoed and audited as is.

The access line names the route template and, PII-masked, the raw path and query
string: a card number or an e-mail in a URL never reaches the log.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ballast_api.errors import error_response
from ballast_common.telemetry import (
    bind_request_context,
    format_traceparent,
    get_logger,
    http_metrics,
    log_error,
    mask_value,
    parse_traceparent,
)

log = get_logger("ballast_api.access")

# Longer paths and query strings are cut in the access line (after masking).
_MAX_LOGGED_URL_PART = 2048

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


def logged_url(scope: Scope) -> dict[str, str]:
    """The request's path and query string for the access line, PII-masked.

    The query string is masked as sent (URL-encoded); the masker also checks it
    decoded, so `card=4111+1111+1111+1111` or `email=alice%40example.com` are caught.
    """
    out = {"path": mask_value(str(scope.get("path", "")))[:_MAX_LOGGED_URL_PART]}
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    if query:
        out["query"] = mask_value(query)[:_MAX_LOGGED_URL_PART]
    return out


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, service: str = "api") -> None:
        self.app = app
        self.service = service
        self.metrics = http_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }
        parent = parse_traceparent(headers.get("traceparent"))
        client = scope.get("client")
        forwarded = headers.get("x-forwarded-for")
        ip = (
            forwarded.split(",")[0].strip()
            if forwarded
            else (client[0] if client else None)
        )
        status = {"code": 500}
        start = time.perf_counter()
        with bind_request_context(
            trace_id=parent[0] if parent else None,
            correlation_id=_clean_correlation(headers.get("x-correlation-id")),
            ip=ip,
            user_agent=headers.get("user-agent"),
        ) as ids:

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                    status["started"] = 1
                    out = MutableHeaders(scope=message)
                    out["X-Correlation-ID"] = ids["correlation_id"] or ""
                    out["traceparent"] = format_traceparent(
                        ids["trace_id"] or "", ids["span_id"] or ""
                    )
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
                self.metrics.requests.labels(
                    self.service, method, template, str(status["code"])
                ).inc()
                self.metrics.duration.labels(self.service, method, template).observe(
                    elapsed
                )
                if template not in ("/healthz", "/metrics"):
                    log.info(
                        "request",
                        method=method,
                        route=template,
                        **logged_url(scope),
                        status=status["code"],
                        duration_ms=round(elapsed * 1000, 2),
                    )
