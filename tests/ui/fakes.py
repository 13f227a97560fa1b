"""Fakes shared by the AppTest scripts (imported inside the scripts)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import streamlit as st

from ballast_ui.client import ApiClient, DraftItem, DraftResult, User, make_http
from ballast_ui.outbox import Outbox
from ballast_ui.state import CTX, Ctx

SENT: list[DraftItem] = []


def _send(items: Sequence[DraftItem], _write_id: str) -> list[DraftResult]:
    SENT.extend(items)
    return [
        DraftResult(form_id=i.form_id, field=i.field, version=1, applied=True)
        for i in items
    ]


def _no_network(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        503,
        json={
            "code": "unavailable",
            "message": "no api in unit tests",
            "details": {},
            "trace_id": None,
        },
    )


def install_ctx(
    permissions: Sequence[str] = ("projects:read", "projects:write"),
    *,
    handler: Callable[[httpx.Request], httpx.Response] = _no_network,
    user_id: uuid.UUID | None = None,
    roles: Sequence[str] = ("editor",),
) -> Ctx:
    """Put a logged-in session context into session state: an api client over
    `handler` (default: no network), a real outbox, a user with `permissions`."""
    ctx: Ctx | None = st.session_state.get(CTX)
    if ctx is None:
        api = ApiClient(
            make_http("http://api.invalid", transport=httpx.MockTransport(handler)),
            "t",
            backoff_s=0,
        )
        ctx = Ctx(api=api, outbox=Outbox(_send, debounce_s=0))
        ctx.user = User(
            id=user_id or uuid.uuid4(),
            username="me",
            display_name="",
            email=None,
            roles=list(roles),
            permissions=list(permissions),
            preferences={},
        )
        ctx.drafts_loaded = True
        st.session_state[CTX] = ctx
    return ctx


def pending(ctx: Ctx) -> dict[str, Any]:
    return ctx.outbox.pending_values()


def render_current_page(ctx: Ctx) -> None:
    """What the frame does for a session: the pages it may see (as ``nav=a,b,...``),
    then the page of the address, or ``denied``."""
    from ballast_ui.pages import ALL_PAGES
    from ballast_ui.router import Router

    r = Router(ALL_PAGES, default="home")
    r.sync_from_url()
    st.text("nav=" + ",".join(p.name for p in r.visible(ctx)))
    page = r.pages[r.current_page]
    if ctx.can(page.permission):
        page.render(ctx, r)
    else:
        st.text("denied")


# The real api clients the app sessions of a test made: closed after each test
# (tests/ui/conftest.py), so none is left for the garbage collector to find open
# during a later test (an unclosed-socket warning failing that test).
OPEN: list[httpx.Client] = []


def tracked_http(base: str) -> httpx.Client:
    """A connection pool to a real api at `base`, closed after the test."""
    http = make_http(base)
    OPEN.append(http)
    return http
