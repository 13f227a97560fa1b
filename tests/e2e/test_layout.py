"""End-to-end: the Workbench never jumps (Chromium, real api on PostgreSQL).

Layout shifts are read from the browser's own record (a ``PerformanceObserver`` on
``layout-shift`` with ``buffered: true``) once the page is completely drawn and the
status poll has run after it; only shifts that start after the page's first paint
count (for a full load: the first contentful paint).
"""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import streamlit
from playwright.sync_api import BrowserContext, Error, Page, WebSocketRoute, expect

from ballast_testing.servers import free_port
from tests.e2e.conftest import login, no_exception
from tests.e2e.test_workbench import PAGES, rerun_counts
from tests.e2e.test_zero_loss import PATIENCE_MS

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Layout shift allowed after the first paint (the target for a full load).
MAX_SHIFT = 0.01

# Every layout-shift entry the page has recorded (buffered), with the moved nodes. The
# observer also watches a mark made right after it starts observing: the buffered
# entries are queued before the mark, so all of them have arrived once the mark has.
# Two animation frames first, so the last drawn frame's shifts are in the record.
SHIFTS_JS = """
async () => {
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const probe = 'layout-probe-' + Math.random();
  const out = [];
  await new Promise((resolve) => {
    const po = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.entryType === 'layout-shift') out.push(e);
        else if (e.name === probe) { po.disconnect(); resolve(); }
      }
    });
    po.observe({type: 'layout-shift', buffered: true});
    po.observe({type: 'mark'});
    performance.mark(probe);
  });
  const describe = (n) => {
    const el = n && (n.nodeType === 1 ? n : n.parentElement);
    if (!el || !el.isConnected) return '(removed)';
    const key = el.closest('[class*="st-key-"]');
    const k = key ? [...key.classList].find((c) => c.startsWith('st-key-')) : '';
    const tid = el.closest('[data-testid]');
    return `${el.tagName.toLowerCase()}${tid ? '[' + tid.dataset.testid + ']' : ''}`
      + ` in ${k || 'the app'}: "${(el.textContent || '').trim().slice(0, 40)}"`;
  };
  return out.map((e) => ({
    start: e.startTime,
    value: e.value,
    sources: (e.sources || []).map((s) => ({
      node: describe(s.node),
      dx: s.currentRect.x - s.previousRect.x,
      dy: s.currentRect.y - s.previousRect.y,
    })),
  }));
}
"""

FCP_JS = """
() => { const p = performance.getEntriesByName('first-contentful-paint')[0];
        return p ? p.startTime : null; }
"""

# Note the frame in which ``cond`` first holds (the page's first paint).
FIRST_PAINT_JS = """
(condSrc) => {
  const cond = new Function('return (' + condSrc + ')();');
  window.__firstPaint = null;
  const tick = () => {
    if (cond()) window.__firstPaint = performance.now();
    else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}
"""

NEXT_FRAME_JS = "() => new Promise((r) => requestAnimationFrame(() => r(null)))"


@pytest.fixture(autouse=True)
def _patient(context: BrowserContext) -> None:
    """Wait on conditions longer: the CI machine is small and shared."""
    context.set_default_timeout(PATIENCE_MS)
    expect.set_options(timeout=PATIENCE_MS // 4)


def shifts_after(page: Page, t0: float) -> list[dict[str, Any]]:
    """The layout shifts that started after ``t0`` (page time, ms)."""
    entries: list[dict[str, Any]] = page.evaluate(SHIFTS_JS)
    return [e for e in entries if e["start"] > t0]


def score(entries: list[dict[str, Any]]) -> float:
    return round(float(sum(e["value"] for e in entries)), 4)


def report(what: str, t0: float, entries: list[dict[str, Any]]) -> str:
    """The shifts, readable: when (ms after ``t0``), how much, what moved where."""
    lines = [f"{what}: layout shift {score(entries)} after first paint"]
    for e in entries:
        lines.append(f"  +{e['start'] - t0:.0f} ms: {e['value']:.4f}")
        lines += [
            f"    {s['node']} moved by ({s['dx']:.0f}, {s['dy']:.0f}) px"
            for s in e["sources"]
        ]
    return "\n".join(lines)


def status_polls(metrics_url: str) -> float:
    """How many status polls the UI has run so far."""
    return rerun_counts(metrics_url).get(("status", "poll"), 0.0)


def wait_polled(page: Page, metrics_url: str, times: int = 2) -> None:
    """Wait until the status poll has run ``times`` more times (and was drawn)."""
    start = status_polls(metrics_url)
    expect(page.locator(".st-key-b-status")).to_be_visible()
    for _ in range(PATIENCE_MS // 100):
        if status_polls(metrics_url) >= start + times:
            break
        page.evaluate(NEXT_FRAME_JS)
        page.wait_for_timeout(100)
    else:
        pytest.fail("the status poll did not run")
    page.evaluate(NEXT_FRAME_JS)


def page_box(page: Page, name: str) -> Any:
    return page.locator(f".st-key-bpage-{name}")


def drawn(page: Page, name: str) -> None:
    """Wait until page ``name`` is shown and complete, and the app's load is over."""
    page.locator("body[data-bloaded]").wait_for(state="attached")
    box = page_box(page, name)
    expect(box).to_be_visible()
    expect(box.get_by_role("heading").first).to_be_visible()
    expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0)
    expect(page.locator('[data-stale="true"]')).to_have_count(0)


def title_top(page: Page, name: str) -> float:
    """Where page ``name``'s title starts (px from the top of the document)."""
    return float(
        page_box(page, name)
        .get_by_role("heading")
        .first.evaluate("e => e.getBoundingClientRect().top + window.scrollY")
    )


class SlowLink:
    """The UI's websocket, delivering the server's messages one per painted frame.

    Streamlit draws each message as it arrives, so the order in which the app sends
    its elements decides what a user on a slow link sees between them; delivering one
    message per frame shows every intermediate state (deterministically, where a fast
    link shows some of them by chance).
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        # Messages held back, each with the connection it belongs to.
        self.queue: list[tuple[WebSocketRoute, str | bytes]] = []
        self.paced = False
        page.route_web_socket(re.compile(r"/_stcore/stream"), self._handle)

    def _handle(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def from_server(message: str | bytes) -> None:
            if self.paced:
                self.queue.append((ws, message))
            else:
                ws.send(message)

        server.on_message(from_server)

    def _deliver(self) -> None:
        ws, message = self.queue.pop(0)
        with contextlib.suppress(Error):  # the connection of a page already left
            ws.send(message)

    def load(self, url: str, done: Callable[[], bool]) -> None:
        """Open ``url``, delivering one message per frame until ``done()`` holds."""
        self.paced = True
        self.page.goto(url)
        deadline = time.monotonic() + PATIENCE_MS / 1000
        # Until the app's load is over. Not "until the queue is empty": the status poll
        # keeps sending, and on a busy machine one message per frame may never catch up.
        while not done():
            if time.monotonic() > deadline:
                self.paced = False
                pytest.fail(f"{url} was not drawn: {self.page.inner_text('body')!r}")
            if self.queue:
                self._deliver()
            self.page.evaluate(NEXT_FRAME_JS)
        self.paced = False
        while self.queue:
            self._deliver()


def test_full_load_does_not_shift(
    context: BrowserContext, ui_url: str, ui_metrics_url: str
) -> None:
    page = context.new_page()
    link = SlowLink(page)
    login(page, ui_url, "admin")
    for name in ("home", "projects", "audit"):
        link.load(
            f"{ui_url}/?page={name}",
            lambda: bool(page.evaluate("() => !!document.body.dataset.bloaded")),
        )
        drawn(page, name)
        wait_polled(page, ui_metrics_url)
        fcp = page.evaluate(FCP_JS)
        assert fcp is not None
        shifts = shifts_after(page, fcp)
        assert score(shifts) <= MAX_SHIFT, report(f"load of {name}", fcp, shifts)
    no_exception(page)


def test_title_sits_at_the_same_place_on_every_page(
    context: BrowserContext, ui_url: str
) -> None:
    page = context.new_page()
    login(page, ui_url, "admin")
    tops = {}
    for name in PAGES:
        page.get_by_role("link", name=re.compile(name)).click()
        drawn(page, name.lower())
        tops[name] = title_top(page, name.lower())
    assert max(tops.values()) - min(tops.values()) <= 0.5, tops
    no_exception(page)


def _heading_painted(page: Page, text: str) -> None:
    """Note the first frame in which the projects page shows the heading ``text``."""
    page.evaluate(
        FIRST_PAINT_JS,
        "() => [...document.querySelectorAll('.st-key-bpage-projects h2')]"
        f".some((h) => h.textContent.trim() === {text!r}"
        " && !h.closest('[data-stale=\"true\"]') && h.offsetParent !== null)",
    )


def _first_paint(page: Page) -> float:
    page.wait_for_function("() => window.__firstPaint !== null")
    return float(page.evaluate("window.__firstPaint"))


def _project_drawn(page: Page) -> None:
    box = page_box(page, "projects")
    for label in ("Name", "Description"):
        expect(box.get_by_role("textbox", name=label)).to_be_visible()
    expect(box.locator('[data-testid="ballast-file-input"]')).to_be_visible()
    expect(box.locator('[data-testid="stDataFrame"]')).to_be_visible()
    expect(box.get_by_text(re.compile(r"Version \d+ · updated"))).to_be_visible()
    expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0)
    expect(page.locator('[data-stale="true"]')).to_have_count(0)


def _open_project_steadily(
    page: Page, metrics_url: str, name: str, pid: str, what: str
) -> None:
    """Open project ``pid`` from the list: nothing moves after its first paint."""
    _heading_painted(page, name)
    page.locator(f".st-key-projects--open--{pid} button").click()
    painted = _first_paint(page)
    _project_drawn(page)
    wait_polled(page, metrics_url)
    shifts = shifts_after(page, painted)
    assert score(shifts) <= MAX_SHIFT, report(what, painted, shifts)


def test_project_page_does_not_move_after_first_paint(
    context: BrowserContext,
    ui_url: str,
    ui_metrics_url: str,
    new_project: Callable[..., str],
) -> None:
    name = "Layout steady project"
    pid = new_project(name)
    page = context.new_page()
    login(page, ui_url, "editor")
    page.get_by_role("link", name=re.compile("Projects")).click()
    drawn(page, "projects")
    for visit in ("first", "again"):
        _open_project_steadily(
            page, ui_metrics_url, name, pid, f"{visit} visit: project"
        )
        # And back to the list.
        _heading_painted(page, "Projects")
        page.get_by_role("button", name="← All projects").click()
        painted = _first_paint(page)
        drawn(page, "projects")
        expect(page.locator(f".st-key-projects--open--{pid} button")).to_be_visible()
        wait_polled(page, ui_metrics_url)
        shifts = shifts_after(page, painted)
        # Mostly 0; once in a few runs the rows moved 7 px (0.0001) about 100 ms after
        # the heading's first paint, cause not found yet: held to the load budget.
        assert score(shifts) <= MAX_SHIFT, report(
            f"{visit} visit: list", painted, shifts
        )
    no_exception(page)


# Streamlit's code for these element kinds, fetched the first time one is drawn.
LAZY_CODE = re.compile(
    r"/static/js/(TextArea|NumberInput|DateInput|Checkbox|DataFrame|FileUploader)"
    r"\.[^/]+\.js$"
)
SLOW_CODE_S = 6.0


@contextlib.contextmanager
def slow_element_code(context: BrowserContext) -> Any:
    """Serve the code of the lazily loaded element kinds SLOW_CODE_S late.

    The browser is sent to a loopback server of the test's own for those files (the
    same bytes Streamlit serves), which waits before answering: a slow link, or a busy
    machine, in which a page can be opened before that code has arrived.
    """
    static = Path(streamlit.__file__).parent / "static"

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(SLOW_CODE_S)
            body = (static / self.path.lstrip("/").split("?")[0]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served: list[str] = []

    def detour(route: Any) -> None:
        path = re.sub(r"^https?://[^/]+", "", route.request.url)
        served.append(path)
        route.continue_(url=f"http://127.0.0.1:{port}{path}")

    context.route(LAZY_CODE, detour)
    try:
        yield served
    finally:
        context.unroute(LAZY_CODE)
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_project_opened_right_after_sign_in_does_not_move(
    context: BrowserContext,
    ui_url: str,
    ui_metrics_url: str,
    new_project: Callable[..., str],
) -> None:
    """The CI failure: the first project opened before the text area's code arrived.

    Its description was a 40 px skeleton for a moment, then a 120 px text area that
    pushed the fields under it down 80 px (and the budget and date inputs, 28 px each).
    """
    name = "Opened at once project"
    pid = new_project(name)
    with slow_element_code(context) as served:
        page = context.new_page()
        login(page, ui_url, "editor")
        page.get_by_role("link", name=re.compile("Projects")).click()
        # As a user does: on as soon as the list is there, not once the load is over.
        # Searched for: the ui's cache may hold the editor's list from before it.
        search = page.locator(".st-key-projects--q input")
        search.fill(name)
        search.press("Enter")
        _open_project_steadily(page, ui_metrics_url, name, pid, "project")
        assert any("TextArea" in path for path in served), served
    no_exception(page)
