"""Security headers on every api response, and the interactive docs switch.

Every response (errors and 500s included: this middleware sits outside the request
context one) gets:

- ``X-Content-Type-Options: nosniff`` -- a JSON body is never sniffed into HTML;
- ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'`` -- never framed
  (clickjacking); the CSP of JSON responses also allows nothing else
  (``default-src 'none'``); the docs pages keep only ``frame-ancestors`` because Swagger
  UI and ReDoc load their scripts and styles from a CDN;
- ``Referrer-Policy: no-referrer``;
- ``Strict-Transport-Security`` when ``security.hsts`` says so: ``auto`` on requests that
  came over TLS (the scheme after a trusted proxy's X-Forwarded-Proto), ``always``, or
  ``never``;
- ``Cache-Control: no-store`` on ``/v1/sessions`` responses: they carry session tokens
  and the user's permissions, which no cache may keep.

``/docs``, ``/redoc`` and ``/openapi.json`` answer 404 when ``security.api_docs`` is
false, or when it is unset and ``env`` is prod. The switch is read per request from the
app's configuration (loaded by the lifespan, after the app was built).

Ref: https://cheatsheetseries.owasp.org/cheatsheets/REST_Security_Cheat_Sheet.html#security-headers
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ballast_api.errors import error_response
from ballast_common.config import AppConfig, Env, SecurityConfig

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# Responses of these paths carry tokens or permissions: never stored by any cache.
NO_STORE_PREFIX = "/v1/sessions"

_COMMON = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
_CSP_API = "default-src 'none'; frame-ancestors 'none'"
_CSP_DOCS = "frame-ancestors 'none'"


def _raw(pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs)


# The headers of an api response and of a docs page, as the ASGI message carries them.
_RAW_API = _raw((*_COMMON, ("Content-Security-Policy", _CSP_API)))
_RAW_DOCS = _raw((*_COMMON, ("Content-Security-Policy", _CSP_DOCS)))
_RAW_NO_STORE = _raw((("Cache-Control", "no-store"), ("Pragma", "no-cache")))


def _add(message: Message, ours: tuple[tuple[bytes, bytes], ...]) -> None:
    """Set `ours` on a response start message, replacing a header of the same name
    whatever its case."""
    names = {name for name, _ in ours}
    raw = [
        (name, value)
        for name, value in message.get("headers", ())
        if name.lower() not in names
    ]
    raw.extend(ours)
    message["headers"] = raw


def docs_enabled(config: AppConfig) -> bool:
    """Whether /docs, /redoc and /openapi.json are served."""
    if config.security.api_docs is not None:
        return config.security.api_docs
    return config.env is not Env.prod


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Before the lifespan has loaded it (no app can serve then), the defaults hold.
        config: AppConfig | None = getattr(scope["app"].state, "config", None)
        sec = config.security if config is not None else SecurityConfig()
        path: str = scope.get("path", "")
        is_docs = path in DOCS_PATHS
        hsts = sec.hsts == "always" or (
            sec.hsts == "auto" and scope.get("scheme") == "https"
        )
        ours = _RAW_DOCS if is_docs else _RAW_API
        if hsts:
            ours += _raw(
                (
                    (
                        "Strict-Transport-Security",
                        f"max-age={sec.hsts_max_age_s}; includeSubDomains",
                    ),
                )
            )
        if path == NO_STORE_PREFIX or path.startswith(NO_STORE_PREFIX + "/"):
            ours += _RAW_NO_STORE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add(message, ours)
            await send(message)

        if is_docs and config is not None and not docs_enabled(config):
            response = error_response(404, "not_found", "not found")
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
