"""End-to-end: nobody types, so nothing is recorded as an edit.

A randomized (seeded) walk of reloads, UI kills and restarts, browser back/forward and
navigation between the project list and two projects' forms. Nothing is ever edited,
so no draft may exist for any field of either project, in the api or in the browser
journal, and no form may show an unsaved change. A failure prints the seed and the steps;
``BALLAST_PHANTOM_SEED`` replays a walk.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import Proc, login, status_badge
from tests.e2e.conftest import ui_proc as new_ui_proc

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PATIENCE_MS = 60_000
STEPS = 200
# Steps per walk of the slow kinds (a UI start takes ~7 s here, a reload ~2 s); every
# other step navigates (~0.5 s). The walk stays under ~3 minutes.
SLOW = {"kill": 3, "kill_reload": 2, "reload": 16}
# Shares of the navigation steps (back/forward fall back to a click at either end).
NAV = {"nav": 50, "back": 30, "forward": 20}

# The project list's URL: the projects page without a project id.
LIST_URL = re.compile(r"[?&]page=projects(?!.*[?&]id=)")

Sql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def ui_proc(
    api_server: Proc, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """A UI process of this module's own: the walk kills and restarts it."""
    proc = new_ui_proc(
        "ui-phantom", api_server, tmp_path_factory.mktemp("e2e-phantom") / "ui.log"
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def base_of(proc: Proc) -> str:
    return proc.health_url.removesuffix("/_stcore/health")


def kill(proc: Proc) -> None:
    """SIGKILL: the process gets no chance to flush or say goodbye."""
    assert proc.proc is not None
    proc.proc.kill()
    proc.proc.wait(timeout=15)
    proc.proc = None


@dataclass
class Walk:
    """The browser's history as the test expects it, and what each entry shows."""

    page: Page
    base: str
    names: dict[str, str]
    history: list[str | None] = field(default_factory=list)  # None: the list
    at: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def view(self) -> str | None:
        return self.history[self.at]

    def projects(self) -> Any:
        return self.page.locator(".st-key-bpage-projects")

    def wait_shown(self) -> None:
        """Wait until the page shows the expected view, drawn by a live session."""
        page, view = self.page, self.view
        box = self.projects()
        expect(page.get_by_test_id("stConnectionStatus")).to_have_count(
            0, timeout=PATIENCE_MS
        )
        if view is None:
            expect(page).to_have_url(LIST_URL, timeout=PATIENCE_MS)
            expect(box.get_by_text("Page 1 of")).to_be_visible(timeout=PATIENCE_MS)
            for pid in self.names:
                expect(
                    box.locator(f".st-key-projects--open--{pid} button")
                ).to_be_visible()
        else:
            expect(page).to_have_url(
                re.compile(rf"[?&]id={view}(&|$)"), timeout=PATIENCE_MS
            )
            expect(box.get_by_role("heading", name=self.names[view])).to_be_visible(
                timeout=PATIENCE_MS
            )
            expect(box.get_by_role("textbox", name="Name")).to_have_value(
                self.names[view]
            )
            expect(box.get_by_text("no unsaved changes")).to_be_visible()
            expect(box.get_by_text("● modified")).to_have_count(0)
        expect(status_badge(page)).to_contain_text("Saved", timeout=PATIENCE_MS)

    def push(self, view: str | None) -> None:
        del self.history[self.at + 1 :]
        self.history.append(view)
        self.at += 1


def schedule(rng: random.Random, steps: int) -> list[str]:
    """The kinds of the walk's steps, in a random order."""
    slow = [k for k, n in SLOW.items() for _ in range(n * steps // STEPS)]
    fast = rng.choices(list(NAV), weights=list(NAV.values()), k=steps - len(slow))
    plan = slow + fast
    rng.shuffle(plan)
    return plan


def _env(name: str) -> str | None:
    return os.environ.get(name)  # noqa: TID251


def until(page: Page, cond: Callable[[], bool], what: str) -> None:
    """Poll ``cond`` (a state outside the page) until it holds."""
    deadline = time.monotonic() + PATIENCE_MS / 1000
    while not cond():
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        page.wait_for_timeout(50)


def wait_saved_badge(page: Page) -> None:
    expect(status_badge(page)).to_contain_text("Saved", timeout=PATIENCE_MS)


BOOTSTRAP = re.compile(
    r'^ballast_ui_rerun_seconds_count\{page="projects",trigger="bootstrap"\} (\S+)$',
    re.M,
)


def bootstraps(proc: Proc) -> int:
    """How many sessions of the UI process drew the projects page first."""
    metrics = f"http://127.0.0.1:{proc.env['BALLAST_UI__METRICS_PORT']}/metrics"
    found = BOOTSTRAP.search(httpx.get(metrics, timeout=5).text)
    return int(float(found.group(1))) if found else 0


def phantom_drafts(sql: Sql, pids: list[str]) -> list[tuple[Any, ...]]:
    return sql(
        "SELECT d.form_id, d.field, d.value FROM drafts d"
        " JOIN users u ON u.id = d.user_id"
        " WHERE u.username = 'editor' AND d.form_id = ANY(%s) ORDER BY 1, 2",
        ([f"project.{p}" for p in pids],),
    )


def journal(page: Page) -> dict[str, Any]:
    """The browser journal (unacknowledged values) of every user in this profile."""
    raw = page.evaluate(
        "() => Object.fromEntries(Object.keys(localStorage)"
        ".filter((k) => k.startsWith('ballast.journal.'))"
        ".map((k) => [k, JSON.parse(localStorage.getItem(k) || '{}')]))"
    )
    out: dict[str, Any] = {}
    for entries in raw.values():
        out.update(entries)
    return out


@pytest.fixture(autouse=True)
def _patient(context: BrowserContext) -> None:
    context.set_default_timeout(PATIENCE_MS)
    expect.set_options(timeout=PATIENCE_MS // 4)


def test_no_phantom_edits_over_a_random_walk(
    context: BrowserContext,
    ui_proc: Proc,
    new_project: Callable[..., str],
    sql: Sql,
) -> None:
    seed = int(_env("BALLAST_PHANTOM_SEED") or random.randrange(2**31))
    steps = int(_env("BALLAST_PHANTOM_STEPS") or STEPS)
    rng = random.Random(seed)
    pids = [new_project(f"Phantom {n} {seed}") for n in ("A", "B")]
    names = {pid: f"Phantom {n} {seed}" for pid, n in zip(pids, "AB", strict=True)}
    page = context.new_page()
    base = base_of(ui_proc)
    walk = Walk(page, base, names, history=[pids[0]])
    started = time.monotonic()
    try:
        login(page, base, "editor", f"/?page=projects&id={pids[0]}")
        # The session cookie is set once the bridge handed the login over.
        until(
            page,
            lambda: any(c["name"] == "ballast_session" for c in context.cookies()),
            "the session cookie",
        )
        walk.wait_shown()
        plan = schedule(rng, steps)
        for n, kind in enumerate(plan):
            if kind == "back" and walk.at == 0:
                kind = "nav"
            if kind == "forward" and walk.at == len(walk.history) - 1:
                kind = "nav"
            walk.log.append(f"{n}: {kind} from {walk.view}")
            if kind == "nav":
                if walk.view is None:
                    target = rng.choice(pids)
                    walk.projects().locator(
                        f".st-key-projects--open--{target} button"
                    ).click()
                    walk.push(target)
                else:
                    walk.projects().get_by_role("button", name="← All projects").click()
                    walk.push(None)
            elif kind == "back":
                page.evaluate("() => history.back()")
                walk.at -= 1
            elif kind == "forward":
                page.evaluate("() => history.forward()")
                walk.at += 1
            elif kind == "reload":
                before = bootstraps(ui_proc)
                page.reload()
                until(page, lambda b=before: bootstraps(ui_proc) > b, "a new session")
            else:
                kill(ui_proc)
                ui_proc.start()
                if kind == "kill_reload":
                    page.reload()
                # else: the page reconnects by itself, to a new session.
                until(page, lambda: bootstraps(ui_proc) > 0, "a new session")
            walk.wait_shown()
            found = phantom_drafts(sql, pids)
            assert not found, f"step {n}: drafts nobody made: {found}"
        # A real edit as the last step: once its draft is stored, everything the
        # session had queued before it has been sent too.
        if walk.view is None:
            walk.projects().locator(f".st-key-projects--open--{pids[0]} button").click()
            walk.push(pids[0])
            walk.wait_shown()
        desc = walk.projects().get_by_role("textbox", name="Description")
        desc.fill("the one real edit")
        desc.press("Tab")
        until(page, lambda: bool(phantom_drafts(sql, pids)), "the real edit's draft")
        wait_saved_badge(page)
        found = phantom_drafts(sql, pids)
        assert found == [
            (f"project.{walk.view}", "description", "the one real edit")
        ], found
        # The real edit leaves the browser journal once acknowledged; nothing else is
        # ever in it.
        until(
            page,
            lambda: not [k for k in journal(page) if k.split(".")[1] in pids],
            f"an empty journal (holds {journal(page)})",
        )
    except (AssertionError, PlaywrightError) as exc:
        tail = "\n".join(walk.log[-30:])
        raise AssertionError(
            f"phantom walk seed={seed} (replay: BALLAST_PHANTOM_SEED={seed}),"
            f" {len(walk.log)} steps in {time.monotonic() - started:.0f} s,"
            f" last steps:\n{tail}\n{exc}"
        ) from exc


def test_ui_server_gone_the_page_says_so(
    context: BrowserContext,
    ui_proc: Proc,
    new_project: Callable[..., str],
    sql: Sql,
) -> None:
    """No "Saved" while the UI server is gone and typed text lives only in the browser."""
    pid = new_project("Offline banner")
    page = context.new_page()
    base = base_of(ui_proc)
    # The sign-in page claims no save status.
    page.goto(base + "/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(status_badge(page)).to_have_text(re.compile(r"^\s*$"))
    login(page, base, "editor", f"/?page=projects&id={pid}")
    box = page.locator(".st-key-bpage-projects")
    desc = box.get_by_role("textbox", name="Description")
    expect(desc).to_have_value("e2e")
    until(
        page,
        lambda: any(c["name"] == "ballast_session" for c in context.cookies()),
        "the session cookie",
    )
    wait_saved_badge(page)
    banner = page.locator(".ballast-offline")
    expect(box.get_by_text("no unsaved changes")).to_be_visible()
    # Typed, not committed (no Enter, no blur): the browser journal alone holds it
    # when the server goes away (Streamlit disables every widget once it notices).
    text = "typed just before the UI server went away"
    desc.fill(text)
    until(page, lambda: text in str(journal(page)), "the text in the browser journal")
    kill(ui_proc)
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("1 change is kept in this browser")
    expect(status_badge(page)).to_be_hidden()
    expect(box.get_by_text("no unsaved changes")).to_be_hidden()
    ui_proc.start()
    expect(banner).to_be_hidden(timeout=PATIENCE_MS)
    # Nothing lost: the new session takes the journal's entry and saves it.
    until(
        page,
        lambda: phantom_drafts(sql, [pid]) == [(f"project.{pid}", "description", text)],
        "the typed text as a draft",
    )
    expect(desc).to_have_value(text, timeout=PATIENCE_MS)
    wait_saved_badge(page)
    expect(box.get_by_text("● modified")).to_have_count(1)


def test_save_that_met_a_conflict_closes_once_resolved(
    browser: Browser,
    ui_proc: Proc,
    new_project: Callable[..., str],
    sql: Sql,
) -> None:
    """Save leaves the project; so does "Keep all mine" after a Save met a conflict."""
    pid = new_project("E2E save conflict")
    base = base_of(ui_proc)
    contexts = [
        browser.new_context(viewport={"width": 1400, "height": 900}) for _ in "ab"
    ]
    try:
        mine, theirs = (c.new_page() for c in contexts)
        for page, user in ((mine, "editor"), (theirs, "admin")):
            page.set_default_timeout(PATIENCE_MS)
            login(page, base, user, f"/?page=projects&id={pid}")
        mine_box = mine.locator(".st-key-bpage-projects")
        their_box = theirs.locator(".st-key-bpage-projects")
        expect(mine_box.get_by_role("textbox", name="Name")).to_have_value(
            "E2E save conflict"
        )
        name = their_box.get_by_role("textbox", name="Name")
        expect(name).to_have_value("E2E save conflict")
        name.fill("E2E save conflict, theirs")
        name.press("Tab")
        expect(their_box.get_by_text("● 1 unsaved")).to_be_visible()
        their_box.get_by_role("button", name="Apply").click()
        expect(their_box.get_by_text("Applied.")).to_be_visible()
        desc = mine_box.get_by_role("textbox", name="Description")
        desc.fill("mine")
        desc.press("Tab")
        expect(mine_box.get_by_text("● 1 unsaved")).to_be_visible()
        mine_box.get_by_role("button", name="Save").click()
        conflict = mine.locator(f".st-key-project-{pid}--conflict")
        expect(conflict).to_contain_text("version 2")
        expect(mine).to_have_url(re.compile(rf"[?&]id={pid}(&|$)"))  # not saved yet
        conflict.get_by_role("button", name="Keep all mine").click()
        # Saved: back on the list, as after any Save; the conflict choices are gone.
        expect(mine).to_have_url(LIST_URL)
        expect(mine_box.get_by_text("Page 1 of")).to_be_visible()
        expect(conflict).to_have_count(0)
    finally:
        for c in contexts:
            c.close()
    ((row_name, row_desc, version),) = sql(
        "SELECT name, description, version FROM projects WHERE id = %s", (pid,)
    )
    assert (row_name, row_desc, version) == ("E2E save conflict", "mine", 3)
