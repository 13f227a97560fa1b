"""End-to-end: every controlled widget survives a refresh; forms; conflicts; api outage."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import (
    Proc,
    login,
    no_exception,
    screenshot,
    status_badge,
    wait_saved,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Longest wait on one condition (ms).
PATIENCE_MS = 60_000


@pytest.fixture(autouse=True)
def _patient(context: BrowserContext) -> None:
    """Wait on conditions longer: the CI machine is small and shared."""
    context.set_default_timeout(PATIENCE_MS)
    expect.set_options(timeout=PATIENCE_MS // 4)


Sql = Callable[..., list[tuple[Any, ...]]]


def open_project(page: Page, ui_url: str, pid: str, user: str = "editor") -> None:
    """Sign in straight onto a project's detail form (a deep link)."""
    login(page, ui_url, user, f"/?page=projects&id={pid}")
    expect(page.get_by_role("textbox", name="Name")).to_be_visible(timeout=PATIENCE_MS)


def pick(page: Page, label: str, option: str) -> None:
    """Choose ``option`` in the select or multiselect labelled ``label``."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def toggle(page: Page, label: str) -> None:
    """Click a checkbox's label, as a user does (the input itself is hidden)."""
    page.locator('[data-testid="stCheckbox"]').filter(has_text=label).click()


def tags(page: Page) -> list[str]:
    return [
        str(t.get_attribute("aria-label"))
        for t in page.locator('[data-testid="stMultiSelect"] [data-tag]').all()
    ]


def modified(page: Page) -> Any:
    return page.locator(".st-key-bpage-projects").get_by_text("● modified")


def clean(page: Page) -> Any:
    """The projects form's "no unsaved changes" marker (Settings has its own)."""
    return page.locator(".st-key-bpage-projects").get_by_text("no unsaved changes")


def unsaved(page: Page, n: int) -> Any:
    return page.locator(".st-key-bpage-projects").get_by_text(f"● {n} unsaved")


def test_non_text_change_then_refresh_at_once(
    context: BrowserContext, ui_url: str, new_project: Callable[..., str]
) -> None:
    pid = new_project("E2E refresh at once")
    page = context.new_page()
    open_project(page, ui_url, pid)
    pick(page, "Status", "done")
    page.reload()  # no wait: the browser journal holds the change
    expect(page.get_by_role("combobox", name="Status")).to_have_value(
        "done", timeout=PATIENCE_MS
    )
    toggle(page, "Public")
    page.reload()
    expect(page.get_by_role("checkbox", name="Public")).to_be_checked(
        timeout=PATIENCE_MS
    )
    expect(page.get_by_role("combobox", name="Status")).to_have_value("done")
    no_exception(page)


OUTAGE_S = 30.0


def test_api_down_30s_nothing_lost_nothing_doubled(
    context: BrowserContext,
    ui_url: str,
    api_server: Proc,
    new_project: Callable[..., str],
    sql: Sql,
) -> None:
    pid = new_project("E2E outage")
    page = context.new_page()
    open_project(page, ui_url, pid)
    text = f"written while the api was down {pid[:8]}"
    api_server.stop()
    down_at = time.monotonic()
    try:
        desc = page.get_by_role("textbox", name="Description")
        desc.fill(text)
        desc.press("Tab")
        expect(status_badge(page)).to_contain_text("Offline", timeout=PATIENCE_MS)
        pick(page, "Status", "paused")
        toggle(page, "Public")
        expect(status_badge(page)).to_contain_text(
            "Offline — 3 changes pending", timeout=PATIENCE_MS
        )
        # The edits are visible and marked while the api is away.
        expect(page.get_by_role("checkbox", name="Public")).to_be_checked()
        expect(modified(page)).to_have_count(3)
        screenshot(page, "offline")
        # Keep the api away for the whole outage (the outbox retries with backoff).
        page.wait_for_timeout(max(0.0, OUTAGE_S - (time.monotonic() - down_at)) * 1000)
        expect(status_badge(page)).to_contain_text("Offline — 3 changes pending")
    finally:
        api_server.start()
    wait_saved(page)
    rows = {
        field: (value, str(draft_id))
        for field, value, draft_id in sql(
            "SELECT d.field, d.value, d.id FROM drafts d"
            " JOIN users u ON u.id = d.user_id"
            " WHERE u.username = 'editor' AND d.form_id = %s",
            (f"project.{pid}",),
        )
    }
    assert rows["description"][0] == text
    assert rows["status"][0] == "paused"
    assert rows["is_public"][0] is True
    # Exactly once: one audited write per changed value, in spite of the retries.
    for field, value in (("description", text), ("status", "paused")):
        (count,) = sql(
            "SELECT count(*) FROM audit_log WHERE resource_type = 'drafts'"
            " AND resource_id = %s AND new_values->>'value' = %s",
            (rows[field][1], value),
        )[0]
        assert count == 1, (field, count)
    page.reload()
    expect(page.get_by_role("textbox", name="Description")).to_have_value(
        text, timeout=PATIENCE_MS
    )
    expect(page.get_by_role("combobox", name="Status")).to_have_value("paused")
    expect(page.get_by_role("checkbox", name="Public")).to_be_checked()
    no_exception(page)
