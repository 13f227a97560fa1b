"""End-to-end: the Workbench in Chromium against the real api on PostgreSQL."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.conftest import (
    PASSWORDS,
    Proc,
    api_url_of,
    login,
    no_exception,
    screenshot,
)
from tests.e2e.test_forms_e2e import Sql
from tests.e2e.test_zero_loss import PATIENCE_MS, open_project, pick

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(autouse=True)
def _patient(context: BrowserContext) -> None:
    """Wait on conditions longer: the CI machine is small and shared."""
    context.set_default_timeout(PATIENCE_MS)
    expect.set_options(timeout=PATIENCE_MS // 4)


# Every page of the Workbench an admin sees, in navigation order.
PAGES = ("Home", "Projects", "Data", "Analysis", "Jobs", "Audit", "Admin", "Settings")


def rerun_counts(metrics_url: str) -> dict[tuple[str, str], float]:
    """``{(page, trigger): runs}`` from the UI's ``ballast_ui_rerun_seconds``."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=10).text
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = re.match(
            r'ballast_ui_rerun_seconds_count\{page="([^"]*)",trigger="([^"]*)"\} (\S+)',
            line,
        )
        if m:
            out[(m[1], m[2])] = float(m[3])
    return out


def reset_preferences(api_server: Proc, user: str) -> None:
    """Put a demo user's preferences back to the defaults (through the api)."""
    base = api_url_of(api_server) + "/v1"
    token = httpx.post(
        f"{base}/sessions", json={"username": user, "password": PASSWORDS[user]}
    ).json()["token"]
    httpx.put(
        f"{base}/users/me/preferences",
        json={"theme": "auto", "language": "en", "timezone": "UTC"},
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()


def test_every_page_and_deep_links_back_forward(
    context: BrowserContext, ui_url: str, ui_metrics_url: str, sql: Sql
) -> None:
    first_event = sql("SELECT coalesce(max(id), 0) FROM events")[0][0]
    page = context.new_page()
    login(page, ui_url, "admin")
    screenshot(page, "home-first")
    for name in PAGES:
        page.get_by_role("link", name=re.compile(name)).click()
        expect(page).to_have_url(re.compile(f"page={name.lower()}"))
        expect(page.locator(f".st-key-bpage-{name.lower()}")).to_be_visible()
        expect(
            page.locator(f".st-key-bpage-{name.lower()}").get_by_role("heading").first
        ).to_be_visible()
        no_exception(page)
        screenshot(page, name.lower())
    # Every rerun was timed, by page and trigger, on the UI's metrics port (the server
    # runs the last navigation's rerun after the browser already shows the page).
    wanted = {("home", "bootstrap"), ("settings", "nav"), ("status", "poll")}
    deadline = time.monotonic() + 30
    counts = rerun_counts(ui_metrics_url)
    while not wanted <= set(counts) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        counts = rerun_counts(ui_metrics_url)
    assert wanted <= set(counts), sorted(counts)
    page.go_back()
    expect(page).to_have_url(re.compile("page=admin"))
    expect(page.locator(".st-key-bpage-admin")).to_be_visible()
    page.go_forward()
    expect(page).to_have_url(re.compile("page=settings"))
    expect(page.locator(".st-key-bpage-settings")).to_be_visible()
    # A deep link in a new tab lands on the page (the session cookie signs it in).
    other = context.new_page()
    other.goto(ui_url + "/?page=audit")
    expect(other.locator(".st-key-bpage-audit")).to_be_visible()
    expect(other.get_by_role("heading", name="Audit")).to_be_visible()
    # The journey reached the api's events table (the dashboard's business panels),
    # sent by the UI in the background: signed in, then every page viewed.
    wanted_views = {name.lower() for name in PAGES}
    deadline = time.monotonic() + 30
    while True:
        rows = sql(
            "SELECT name, props->>'page' FROM events e JOIN users u ON u.id = e.user_id"
            " WHERE e.id > %s AND u.username = 'admin'",
            (first_event,),
        )
        views = {str(p) for n, p in rows if n == "workbench.page_viewed"}
        signed_in = any(n == "workbench.signed_in" for n, _ in rows)
        if (wanted_views <= views and signed_in) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert signed_in, rows
    assert wanted_views <= views, rows


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("/?page=projects&id=x", "This project does not exist"),
        ("/?page=projects&id=%00", "This project does not exist"),
        ("/?page=projects&p=abc", "Page 1 of"),
        ("/?page=projects&q=%00", "cannot be searched for"),
        ("/?page=projects&p=-7", "Page 1 of"),
        ("/?page=projects&p=" + "9" * 300, "projects"),
        ("/?page=audit&p=1e9", "Audit"),
        ("/?page=jobs&id=not-a-job", "Jobs"),
        ("/?page=data&id=..%2F..%2Fetc", "Data"),
        ("/?page=no-such-page", "Home"),
    ],
)
def test_a_garbled_address_shows_a_page_not_an_exception(
    context: BrowserContext, ui_url: str, address: str, shown: str
) -> None:
    page = context.new_page()
    login(page, ui_url, "admin", address)
    expect(page.get_by_text(shown).first).to_be_visible()
    no_exception(page)


def test_settings_theme_language_timezone_applied(
    context: BrowserContext, ui_url: str, api_server: Proc
) -> None:
    page = context.new_page()
    login(page, ui_url, "viewer", "/?page=settings")
    body = page.locator(".stApp")
    light = body.evaluate("e => getComputedStyle(e).backgroundColor")
    box = page.locator(".st-key-bpage-settings")
    try:
        pick(page, "Theme", "dark")
        pick(page, "Language", "Deutsch")
        zone = page.get_by_role("combobox", name="Timezone")
        zone.click()
        zone.press_sequentially("Asia/Tokyo")
        page.get_by_role("option", name="Asia/Tokyo", exact=True).click()
        box.get_by_role("button", name="Apply").click()
        # Language: the frame and the navigation speak German.
        nav = page.locator(".ballast-nav")
        expect(nav.get_by_role("link", name=re.compile("Einstellungen"))).to_be_visible(
            timeout=PATIENCE_MS
        )
        expect(nav.get_by_role("link", name=re.compile("Projekte"))).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("Abmelden"))).to_be_visible()
        # Theme: the page turns dark.
        expect(body).not_to_have_css("background-color", light)
        dark = body.evaluate("e => getComputedStyle(e).backgroundColor")
        assert dark == "rgb(14, 17, 23)", dark
        # Timezone: times are shown in it.
        expect(
            box.get_by_text(re.compile(r"Asia/Tokyo: \d{4}-\d\d-\d\d \d\d:\d\d JST"))
        ).to_be_visible()
        screenshot(page, "settings-applied")
        # Persisted: a new tab (new Streamlit session) has them all.
        other = context.new_page()
        other.goto(ui_url + "/?page=projects")
        expect(
            other.locator(".ballast-nav").get_by_role(
                "link", name=re.compile("Projekte")
            )
        ).to_be_visible(timeout=PATIENCE_MS)
        expect(other.locator(".stApp")).to_have_css("background-color", dark)
        other.get_by_role("button", name="Open").first.click()
        expect(other.get_by_text(re.compile(r"geändert .* JST"))).to_be_visible(
            timeout=PATIENCE_MS
        )
    finally:
        # The demo viewer speaks English again for the other tests.
        reset_preferences(api_server, "viewer")


def test_viewer_cannot_see_or_reach_admin(context: BrowserContext, ui_url: str) -> None:
    page = context.new_page()
    login(page, ui_url, "viewer")
    nav = page.locator(".ballast-nav")
    expect(nav.get_by_role("link", name=re.compile("Projects"))).to_be_visible()
    expect(nav.get_by_role("link", name=re.compile("Admin"))).to_have_count(0)
    expect(nav.get_by_role("link", name=re.compile("Audit"))).to_have_count(0)
    page.goto(ui_url + "/?page=admin")
    expect(page.get_by_role("heading", name="Access denied")).to_be_visible()
    expect(page.get_by_text("Users and roles")).to_have_count(0)
    screenshot(page, "access-denied")


def test_uncommitted_typing_survives_refresh(
    context: BrowserContext, ui_url: str, new_project: Callable[..., str]
) -> None:
    # A project of the editor's own: the demo projects are the admin's, read-only to
    # the editor (the first project in the list depended on which tests ran before).
    page = context.new_page()
    open_project(page, ui_url, new_project(f"Typing {uuid.uuid4().hex[:8]}"))
    url = page.url
    name = page.get_by_role("textbox", name="Name")
    original = name.input_value()
    name.click()
    name.press("End")
    name.type(" typed-not-committed", delay=5)
    page.reload()
    assert page.url == url
    expect(page.get_by_role("textbox", name="Name")).to_have_value(
        original + " typed-not-committed", timeout=PATIENCE_MS
    )
    no_exception(page)


def test_committed_values_survive_refresh_and_new_tab(
    context: BrowserContext, ui_url: str, new_project: Callable[..., str]
) -> None:
    page = context.new_page()
    open_project(page, ui_url, new_project(f"Committed {uuid.uuid4().hex[:8]}"))
    desc = page.get_by_role("textbox", name="Description")
    desc.fill("restored description")
    desc.press("Tab")
    page.locator(".st-key-b-status").get_by_text("Saved").wait_for(timeout=PATIENCE_MS)
    page.reload()
    expect(page.get_by_role("textbox", name="Description")).to_have_value(
        "restored description", timeout=PATIENCE_MS
    )
    tab = context.new_page()
    tab.goto(page.url)
    expect(tab.get_by_role("textbox", name="Description")).to_have_value(
        "restored description", timeout=PATIENCE_MS
    )
    expect(tab.get_by_text("● modified").first).to_be_visible()
