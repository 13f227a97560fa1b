"""The sign-in page with single sign-on (AppTest) against a real api process and a real
OpenID provider (tests/fixtures/oidc.py): the button leads to the provider, the redirect
back (code and state in the URL) signs the browser session in with the mapped role, and
what fails is said on the page. The ui decides nothing: the api verifies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from ballast_common.db import DB
from ballast_testing.api import api_process
from tests.api.conftest import _seeded
from tests.fixtures.oidc import Provider

pytestmark = pytest.mark.integration

API: dict[str, str] = {}
OPEN: list[httpx.Client] = []
REDIRECT = "http://ui.test/"


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


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
    from ballast_ui.client import ApiClient, make_http
    from ballast_ui.outbox import Outbox
    from ballast_ui.state import CTX, Ctx, finish_external_sign_in
    from tests.ui.fakes import _send
    from tests.ui.test_sign_in_page import API, OPEN

    ctx = st.session_state.get(CTX)
    if ctx is None:
        http = make_http(API["base"])
        OPEN.append(http)
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


def run(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_function(sign_in_app, default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def sso_button_url(at: AppTest) -> str:
    (button,) = at.get("link_button")
    assert button.proto.label == "Sign in with Corp SSO"
    return str(button.proto.url)


def notices(at: AppTest) -> str:
    parts: list[Any] = [*at.info, *at.error]
    return "\n".join(str(p.value) for p in parts)


@pytest.mark.usefixtures("api")
def test_the_button_leads_to_the_provider_and_back_signs_in(
    oidc_provider: Provider,
) -> None:
    sub = f"ui-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, preferred_username=sub, groups=["ballast-editors"])
    at = run()
    # Password accounts are off here: no password form, only the button.
    assert not at.text_input
    url = sso_button_url(at)
    assert url.startswith(oidc_provider.issuer)
    back = oidc_provider.authorize(url, sub)
    # The browser comes back to the ui with code and state: a new session.
    at = run({"code": back["code"], "state": back["state"]})
    assert [t.value for t in at.text] == [f"user={sub} roles=editor"]
    # Code and state are taken off the address at once.
    assert "code" not in at.query_params
    assert "state" not in at.query_params


@pytest.mark.usefixtures("api")
def test_a_refused_sign_in_is_said_on_the_page(oidc_provider: Provider) -> None:
    sub = f"ui-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["contractors"])
    back = oidc_provider.authorize(sso_button_url(run()), sub)
    at = run({"code": back["code"], "state": back["state"]})
    assert not at.text
    assert "none of your groups gives access" in notices(at)
    tampered = run({"code": back["code"], "state": back["state"][:-6] + "AAAAAA"})
    assert "sign-in state is invalid or expired" in notices(tampered)
    cancelled = run({"error": "access_denied", "state": back["state"]})
    assert "Single sign-on did not complete: access_denied." in notices(cancelled)
    assert sso_button_url(cancelled).startswith(oidc_provider.issuer)
