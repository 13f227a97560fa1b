"""Single sign-on in Chromium: a real OpenID provider (tests/fixtures/oidc.py), the api
and the ui as processes configured for it. The button leads through the ui's
`/_ballast/sso` to the provider and back, signed in; the provider's answer opened in
another browser (login CSRF) signs nobody in there."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, expect

from ballast_testing.servers import free_port
from tests.e2e.conftest import PASSWORDS, Proc, _env, no_exception, screenshot, ui_proc
from tests.fixtures.oidc import Provider

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LABEL = "Sign in with Corp SSO"


@pytest.fixture(scope="module")
def sso_ui(
    stack_db: str, oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An api with OIDC on (and passwords) and its ui, on the e2e database."""
    api_port, ui_port = free_port(), free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    logs = tmp_path_factory.mktemp("e2e-sso")
    api = Proc(
        "api-sso",
        [sys.executable, "-m", "ballast_api"],
        _env(
            BALLAST_DATABASE__URL=stack_db,
            BALLAST_API__HOST="127.0.0.1",
            BALLAST_API__PORT=str(api_port),
            BALLAST_AUTH__OIDC__ENABLED="true",
            BALLAST_AUTH__OIDC__ISSUER=oidc_provider.issuer,
            BALLAST_AUTH__OIDC__CLIENT_ID="ballast-e2e",
            BALLAST_AUTH__OIDC__CLIENT_SECRET="e2e-client-secret-0123456789",
            BALLAST_AUTH__OIDC__REDIRECT_URI=ui + "/",
            BALLAST_AUTH__OIDC__DISPLAY_NAME="Corp SSO",
            BALLAST_AUTH__OIDC__GROUP_ROLES=json.dumps({"ballast-editors": "editor"}),
        ),
        f"http://127.0.0.1:{api_port}/healthz",
        logs / "api.log",
    )
    ui_server = ui_proc(
        "ui-sso", f"http://127.0.0.1:{api_port}", logs / "ui.log", port=ui_port
    )
    api.start()
    try:
        ui_server.start()
        try:
            yield ui
        finally:
            ui_server.stop()
    finally:
        api.stop()


def authorize_at_provider(tab: Page, sub: str) -> None:
    """The provider's own sign-in form."""
    tab.get_by_placeholder("sub").fill(sub)
    tab.get_by_role("button", name="Authorize").click()


def user(sub: str) -> str:
    return f"sso-{sub}-{uuid.uuid4().hex[:8]}"


def test_the_sso_button_signs_in_through_the_provider(
    browser: Browser, sso_ui: str, oidc_provider: Provider
) -> None:
    sub = user("carol")
    oidc_provider.set_user(sub, preferred_username=sub, groups=["ballast-editors"])
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(sso_ui + "/")
        # Passwords stay on beside single sign-on.
        expect(page.get_by_label("Username")).to_be_visible()
        button = page.get_by_role("link", name=LABEL)
        with context.expect_page() as opened:
            button.click()
        tab = opened.value
        authorize_at_provider(tab, sub)
        expect(
            tab.get_by_role("button", name=re.compile(re.escape(sub)))
        ).to_be_visible(timeout=30_000)
        tab.locator(".ballast-nav").wait_for()
        # Code and state are gone from the address; the cookie keeps the sign-in.
        assert "code=" not in tab.url, tab.url
        assert "state=" not in tab.url, tab.url
        tab.locator("body[data-bsession]").wait_for(state="attached")
        tab.reload()
        expect(
            tab.get_by_role("button", name=re.compile(re.escape(sub)))
        ).to_be_visible(timeout=30_000)
        no_exception(tab)
        screenshot(tab, "sso-signed-in")
    finally:
        context.close()


def test_the_providers_answer_opened_in_another_browser_signs_nobody_in(
    browser: Browser, sso_ui: str, oidc_provider: Provider
) -> None:
    """Login CSRF: Mallory signs in at the provider as herself, keeps the address the
    provider sends her browser back to, and has the victim open it."""
    sub = user("mallory")
    oidc_provider.set_user(sub, preferred_username=sub, groups=["ballast-editors"])
    mallory = browser.new_context()
    victim = browser.new_context()
    try:
        tab = mallory.new_page()
        # Her browser begins a sign-in (and gets the ui's cookie); she signs in at the
        # provider and keeps the address it sends her back to, without opening it.
        tab.goto(sso_ui + "/_ballast/sso")
        expect(tab.get_by_placeholder("sub")).to_be_visible()
        back = oidc_provider.authorize(tab.url, sub)
        link = f"{sso_ui}/?{urlencode(back)}"
        page = victim.new_page()
        page.goto(link)
        expect(
            page.get_by_text("must finish in the browser that started it")
        ).to_be_visible(timeout=30_000)
        expect(page.get_by_label("Username")).to_be_visible()
        assert not victim.cookies() or all(
            c["name"] != "ballast_session" for c in victim.cookies()
        )
        # The victim signs in as themself as usual, unaffected.
        page.get_by_label("Username").fill("viewer")
        page.get_by_role("textbox", name="Password").fill(PASSWORDS["viewer"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name=re.compile("viewer"))).to_be_visible(
            timeout=30_000
        )
        # Mallory's own browser finishes her sign-in with the same address.
        tab.goto(link)
        expect(
            tab.get_by_role("button", name=re.compile(re.escape(sub)))
        ).to_be_visible(timeout=30_000)
    finally:
        victim.close()
        mallory.close()
