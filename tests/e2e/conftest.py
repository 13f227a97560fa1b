"""The local stack for browser tests: api (on PostgreSQL) and ui as real processes.

The api and ui run as ``python -m ballast_api`` / ``python -m ballast_ui`` on free
loopback ports; the database is the session's throwaway PostgreSQL database, migrated
and seeded with the demo users. Chromium is Debian's (``/usr/bin/chromium``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from ballast_testing.servers import LOOPBACK, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "e2e-screenshots"
PASSWORDS = {
    "admin": "admin-demo-pass",
    "editor": "editor-demo-pass",
    "viewer": "viewer-demo-pass",
}


@dataclass
class Proc:
    """A service process that tests may stop and start again (same port)."""

    name: str
    args: list[str]
    env: dict[str, str]
    health_url: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()  # never leave a half-started server behind
        raise RuntimeError(
            f"{self.name} did not become healthy in {timeout:g} s: see {self.log_path}"
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None


def _env(**extra: str) -> dict[str, str]:
    # Child processes inherit the test environment plus their own settings.
    env = dict(os.environ)  # noqa: TID251
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def stack_db(postgres_server: Any) -> Iterator[str]:
    """A database of the e2e suite's own, migrated and seeded through the real CLI.

    Not the shared `pg_url`: other suites change the demo users (e.g. their language).
    """
    name = "ballast_e2e_" + uuid.uuid4().hex[:10]
    pg_url = postgres_server.create_database(name)
    ballast = str(Path(sys.executable).with_name("ballast"))
    env = _env(BALLAST_DATABASE__URL=pg_url)
    for cmd in (["db", "migrate"], ["db", "seed"]):
        subprocess.run(
            [ballast, *cmd], env=env, check=True, capture_output=True, timeout=120
        )
    yield pg_url
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def api_server(
    stack_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """The state API on a free port."""
    port = free_port()
    logs = tmp_path_factory.mktemp("e2e-logs")
    proc = Proc(
        "api",
        [sys.executable, "-m", "ballast_api"],
        _env(
            BALLAST_DATABASE__URL=stack_db,
            BALLAST_API__HOST="127.0.0.1",
            BALLAST_API__PORT=str(port),
        ),
        f"http://127.0.0.1:{port}/healthz",
        logs / "api.log",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def ui_metrics_port() -> int:
    """The metrics port of `ui_url`'s process."""
    return free_port()


@pytest.fixture(scope="session")
def ui_metrics_url(ui_url: str, ui_metrics_port: int) -> str:
    """Where `ui_url`'s process serves /metrics (not on its main port)."""
    del ui_url  # the process must run, not only have a port
    return f"http://127.0.0.1:{ui_metrics_port}"


@pytest.fixture(scope="session")
def ui_url(
    api_server: Proc, ui_metrics_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The UI (Streamlit + its routes) on a free port, talking to `api_server`."""
    proc = ui_proc(
        "ui",
        api_server,
        tmp_path_factory.mktemp("e2e-ui") / "ui.log",
        metrics_port=ui_metrics_port,
    )
    proc.start()
    try:
        yield proc.health_url.removesuffix("/_stcore/health")
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    if not CHROMIUM.exists():
        pytest.fail(
            "chromium is not installed: apt-get install chromium", pytrace=False
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies, localStorage) per test."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


def login(page: Page, base: str, user: str, path: str = "/") -> None:
    """Open ``path`` and sign in as a demo user."""
    page.goto(base + path)
    page.get_by_label("Username").fill(user)
    page.get_by_role("textbox", name="Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.locator(".ballast-nav").wait_for()
    # The session cookie is set by a request of its own after the sign-in is drawn; a
    # test that reloads must not outrun it (body[data-bsession] marks it set).
    page.locator("body[data-bsession]").wait_for(state="attached")


def screenshot(page: Page, name: str) -> None:
    """Keep a screenshot of the page under var/e2e-screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def no_exception(page: Page) -> None:
    """Fail on a Streamlit exception box."""
    boxes = page.locator('[data-testid="stException"]').all_inner_texts()
    assert not boxes, boxes


def api_url_of(api: Proc) -> str:
    """The base URL of the api process."""
    return api.health_url.removesuffix("/healthz")


def ui_proc(
    name: str,
    api: Proc | str,
    log_path: Path,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
) -> Proc:
    """A ui process (not started) talking to `api` (its process or its base URL), on
    loopback: on `port` and `metrics_port` when given, else on free ports of its own."""
    port = port or free_port()
    return Proc(
        name,
        [sys.executable, "-m", "ballast_ui"],
        _env(
            BALLAST_API_URL=api if isinstance(api, str) else api_url_of(api),
            BALLAST_UI__HOST=LOOPBACK,
            BALLAST_UI__PORT=str(port),
            BALLAST_UI__METRICS_PORT=str(metrics_port or free_port()),
        ),
        f"http://{LOOPBACK}:{port}/_stcore/health",
        log_path,
    )


@pytest.fixture
def new_project(api_server: Proc) -> Callable[..., str]:
    """Create a project through the real api (as the editor); returns its id."""
    from ballast_ui.client import ApiClient, make_http

    def make(name: str, **fields: object) -> str:
        http = make_http(api_url_of(api_server))
        try:
            api = ApiClient(http)
            token = api.login("editor", PASSWORDS["editor"]).token
            data = {"name": name, "description": "e2e", "status": "draft", **fields}
            return str(api.with_token(token).create_project(data).id)
        finally:
            http.close()

    return make


@pytest.fixture
def sql(stack_db: str) -> Callable[[str, tuple[object, ...]], list[tuple[object, ...]]]:
    """Run one query on the stack's database (to check the api's rows)."""

    def run(query: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(stack_db) as conn:
            return list(conn.execute(query, args).fetchall())

    return run


def editor_draft(
    sql: Callable[..., list[tuple[object, ...]]], pid: str, field: str
) -> Any:
    """The editor's draft of a project form's field, as stored (None: no draft)."""
    rows = sql(
        "SELECT d.value FROM drafts d JOIN users u ON u.id = d.user_id"
        " WHERE u.username = 'editor' AND d.form_id = %s AND d.field = %s",
        (f"project.{pid}", field),
    )
    return rows[0][0] if rows else None


def status_badge(page: Page) -> Locator:
    """The outbox status badge in the header."""
    return page.locator(".st-key-b-status")


def wait_saved(page: Page) -> None:
    """Wait until the outbox has nothing pending (the badge says Saved)."""
    expect(status_badge(page)).to_contain_text("Saved", timeout=20_000)
