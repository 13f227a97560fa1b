"""The ASGI entry point: Streamlit plus the UI's own routes.

- ``GET /metrics``: 404 (the metrics are on ``ui.metrics_port``; see ``__main__``).
- ``POST /_ballast/session``: redeem a login hand-off nonce into an HttpOnly cookie.
- ``POST /_ballast/logout``: end the api session named by the cookie and delete it.
- ``GET /_ballast/sso``: begin a single sign-on bound to this browser (a secret in an
  HttpOnly cookie) and send the browser to the provider.
- ``/_ballast/uploads…``: direct uploads of the Data page, forwarded to the api with the
  cookie's session (`ballast_ui.uploads`).
- ``GET /_ballast/exports/{kind}/{id}?format=``: an export (a dataset, a job's result)
  streamed from the api with the cookie's session (`ballast_ui.exports`).
"""

from __future__ import annotations

import json
import secrets
from importlib import resources
from pathlib import Path
from typing import Literal

import httpx
import streamlit as st
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from ballast_common.config import load_config
from ballast_ui import exports, uploads
from ballast_ui.auth import COOKIE_NAME, SSO_COOKIE, begin_sso, redeem
from ballast_ui.st_internals import (
    keep_output_of_finished_runs,
    lazy_filtered_state,
    warn_if_untested,
)

# The entry script ships inside the package, so an installed (non-editable) wheel has it.
SCRIPT = Path(str(resources.files("ballast_ui.script") / "streamlit_app.py"))


async def metrics(_request: Request) -> Response:
    """Not here: 404. Metrics are served on the metrics port (ui.metrics_port), which
    the Ingress never routes; without this route Streamlit would answer its page."""
    return PlainTextResponse(
        "not found: /metrics is served on the metrics port\n", status_code=404
    )


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _with_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    max_age: int,
    samesite: Literal["lax", "strict"],
) -> Response:
    """`response` setting an HttpOnly cookie for the whole app (Secure behind HTTPS),
    never cached."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        secure=_secure(request),
        samesite=samesite,
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def session(request: Request) -> Response:
    """Turn a one-time nonce into the session cookie (HttpOnly, SameSite=Strict)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = {}
    nonce = body.get("nonce") if isinstance(body, dict) else None
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 200:
        found = None
    else:
        try:
            found = await redeem(load_config().api_url, nonce)
        except httpx.HTTPError:
            return JSONResponse(
                {"code": "unavailable", "message": "the state api is unreachable"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
    if found is None:
        return JSONResponse(
            {"code": "invalid_handoff", "message": "unknown or expired"},
            status_code=400,
        )
    token, max_age = found
    return _with_cookie(
        JSONResponse({"ok": True}), request, COOKIE_NAME, token, max_age, "strict"
    )


async def logout(request: Request) -> Response:
    """Revoke the api session of the cookie (best effort) and delete the cookie."""
    token = request.cookies.get(COOKIE_NAME)
    if token:
        url = load_config().api_url.rstrip("/") + "/v1/sessions/current"
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                await client.delete(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            pass  # the session still ends at its idle timeout; the cookie goes now
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


async def sso(request: Request) -> Response:
    """Begin a single sign-on in this browser and send it to the provider.

    A fresh random secret goes to the api (sealed, hashed, into the OIDC state) and
    into this browser's `ballast_sso` cookie; the redirect back is accepted only with
    it. When the api cannot begin one, the browser goes back to the sign-in page with
    an OAuth-style ``error`` (said there).
    """
    config = load_config()
    binding = secrets.token_urlsafe(32)
    error = None
    try:
        url = await begin_sso(config.api_url, binding)
    except LookupError:
        error = "sso_not_configured"
    except httpx.HTTPError:
        error = "temporarily_unavailable"
    if error is not None:
        # ../ from <base>/_ballast/sso is the app's own address, under any base path.
        back = RedirectResponse(f"../?error={error}", status_code=303)
        back.headers["Cache-Control"] = "no-store"
        return back
    # Lax: the provider's redirect back is a top-level navigation from its site.
    return _with_cookie(
        RedirectResponse(url, status_code=303),
        request,
        SSO_COOKIE,
        binding,
        config.auth.oidc.state_ttl_s,
        "lax",
    )


ROUTES = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/_ballast/session", session, methods=["POST"]),
    Route("/_ballast/logout", logout, methods=["POST"]),
    Route("/_ballast/sso", sso, methods=["GET"]),
    *uploads.ROUTES,
    *exports.ROUTES,
]

warn_if_untested()
keep_output_of_finished_runs()
lazy_filtered_state()
app = st.App(str(SCRIPT), routes=ROUTES)
