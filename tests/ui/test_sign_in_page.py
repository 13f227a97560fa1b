"""The sign-in page with single sign-on (AppTest) against a real api process and a real
OpenID provider (tests/fixtures/oidc.py): the button leads to the ui's `/_ballast/sso`,
which binds the sign-in to the browser (a secret in a cookie) and sends it to the
provider; the redirect back (code and state in the URL) signs the browser session in
with the mapped role, only in the browser that began it, and what fails is said on the
page. The ui decides nothing: the api verifies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from streamlit.testing.v1 import AppTest

from ballast_common.db import DB
from ballast_testing.api import api_process
from ballast_ui import server, state
from ballast_ui.auth import SSO_COOKIE
from tests.api.conftest import _seeded
from tests.fixtures.oidc import Provider

pytestmark = pytest.mark.integration

API: dict[str, str] = {}
REDIRECT = "http://ui.test/"


@pytest.fixture(scope="module")
def api(
    oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("sign-in-page")
    url = f"sqlite:///{tmp}/api.db"
    db = _seeded(DB(url))
    env = {
        "BALLAST_PATHS__DATA_DIR": str(tmp / "data"),
        "BALLAST_AUTH__LOCAL_ACCOUNTS": "false",
        "BALLAST_AUTH__OIDC__ENABLED": "true",
        "BALLAST_AUTH__OIDC__ISSUER": oidc_provider.issuer,
        "BALLAST_AUTH__OIDC__CLIENT_ID": "ballast-ui-test",
        "BALLAST_AUTH__OIDC__CLIENT_SECRET": "ui-test-client-secret-0123",
        "BALLAST_AUTH__OIDC__REDIRECT_URI": REDIRECT,
        "BALLAST_AUTH__OIDC__DISPLAY_NAME": "Corp SSO",
        "BALLAST_AUTH__OIDC__GROUP_ROLES": json.dumps({"ballast-editors": "editor"}),
    }
    with api_process(url, env=env, log_path=tmp / "api.log") as base:
        API["base"] = base
        yield base
    db.dispose()


def sign_in_app() -> None:
    import streamlit as st

    from ballast_common.config import AppConfig
    from ballast_ui.app import _login
    from ballast_ui.client import ApiClient
    from ballast_ui.outbox import Outbox
    from ballast_ui.state import CTX, Ctx, finish_external_sign_in
    from tests.ui.fakes import _send, tracked_http
    from tests.ui.test_sign_in_page import API

    ctx = st.session_state.get(CTX)
    if ctx is None:
        http = tracked_http(API["base"])
        ctx = Ctx(
            api=ApiClient(http, None, backoff_s=0), outbox=Outbox(_send, debounce_s=0)
        )
        st.session_state[CTX] = ctx
    if ctx.user is None:
        problem = finish_external_sign_in(ctx, AppConfig())
        if problem:
            ctx.notices.append(problem)
    if ctx.user is not None:
        st.text(f"user={ctx.user.username} roles={','.join(ctx.user.roles)}")
    else:
        _login(ctx)


class Browser:
    """One browser: its cookies, the ui's routes (any replica) and its app sessions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.cookies: dict[str, str] = {}
        monkeypatch.setenv("BALLAST_API_URL", API["base"])

    def start_sso(self) -> str:
        """Press the button: the ui's route answers with the provider's address."""
        with TestClient(Starlette(routes=server.ROUTES)) as ui:
            resp = ui.get("/" + state.SSO_START, follow_redirects=False)
        assert resp.status_code == 303, resp.text
        assert resp.headers["cache-control"] == "no-store"
        cookie = resp.headers["set-cookie"]
        for part in ("HttpOnly", "SameSite=lax", "Max-Age=600", "Path=/"):
            assert part in cookie, cookie
        self.cookies[SSO_COOKIE] = resp.cookies[SSO_COOKIE]
        return resp.headers["location"]

    def run(self, query: dict[str, str] | None = None) -> AppTest:
        # What st.context.cookies holds in a session this browser opens.
        self.monkeypatch.setattr(state, "browser_cookie", self.cookies.get)
        return run(query)


def run(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_function(sign_in_app, default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def sso_button(at: AppTest) -> str:
    (button,) = at.get("link_button")
    assert button.proto.label == "Sign in with Corp SSO"
    return str(button.proto.url)


def notices(at: AppTest) -> str:
    parts: list[Any] = [*at.info, *at.error]
    return "\n".join(str(p.value) for p in parts)


@pytest.mark.usefixtures("api")
def test_the_button_leads_to_the_provider_and_back_signs_in(
    oidc_provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = f"ui-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, preferred_username=sub, groups=["ballast-editors"])
    browser = Browser(monkeypatch)
    at = browser.run()
    # Password accounts are off here: no password form, only the button, which leads
    # to the ui's own route (relative: any base path).
    assert not at.text_input
    assert sso_button(at) == "_ballast/sso"
    url = browser.start_sso()
    assert url.startswith(oidc_provider.issuer)
    back = oidc_provider.authorize(url, sub)
    # The browser comes back to the ui with code and state: a new session.
    at = browser.run({"code": back["code"], "state": back["state"]})
    assert [t.value for t in at.text] == [f"user={sub} roles=editor"]
    # Code and state are taken off the address at once.
    assert "code" not in at.query_params
    assert "state" not in at.query_params


@pytest.mark.usefixtures("api")
def test_code_and_state_sent_to_another_browser_do_not_sign_it_in(
    oidc_provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Login CSRF: the attacker signs in at the provider as themself and has the victim
    open the redirect address; the victim must not end up in the attacker's account."""
    sub = f"mallory-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, preferred_username=sub, groups=["ballast-editors"])
    attacker = Browser(monkeypatch)
    back = oidc_provider.authorize(attacker.start_sso(), sub)
    link = {"code": back["code"], "state": back["state"]}
    # A victim that never began a sign-in (no cookie): the ui says so, asks nothing.
    fresh = Browser(monkeypatch).run(link)
    assert not at_signed_in(fresh)
    assert "must finish in the browser that started it" in notices(fresh)
    # A victim with a sign-in of its own under way: the api refuses the mix.
    victim = Browser(monkeypatch)
    victim.start_sso()
    refused = victim.run(link)
    assert not at_signed_in(refused)
    assert "started in another browser" in notices(refused)
    # The attacker's own browser still finishes: the refusals spent nothing.
    assert [t.value for t in attacker.run(link).text] == [f"user={sub} roles=editor"]


def at_signed_in(at: AppTest) -> bool:
    return any(str(t.value).startswith("user=") for t in at.text)


@pytest.mark.usefixtures("api")
def test_a_refused_sign_in_is_said_on_the_page(
    oidc_provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = f"ui-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["contractors"])
    browser = Browser(monkeypatch)
    back = oidc_provider.authorize(browser.start_sso(), sub)
    at = browser.run({"code": back["code"], "state": back["state"]})
    assert not at.text
    assert "none of your groups gives access" in notices(at)
    tampered = browser.run(
        {"code": back["code"], "state": back["state"][:-6] + "AAAAAA"}
    )
    assert "sign-in state is invalid or expired" in notices(tampered)
    cancelled = browser.run({"error": "access_denied", "state": back["state"]})
    assert "Single sign-on did not complete: access_denied." in notices(cancelled)
    assert sso_button(cancelled) == "_ballast/sso"
