"""UI benchmark: the Workbench vs a bare Streamlit app, in Chromium, same run.

Writes bench/results/ui.json with, for Ballast and (prefixed ``bare_``) for a bare
Streamlit app with the same pages and widgets using ``st.navigation``:
- nav_p50_ms, nav_p95_ms: click on a navigation link -> the new page's content is in
  the DOM, timed in the page (performance.now, MutationObserver, then one frame);
- interact_p95_ms: click on the "Public" checkbox -> the field's note ("● modified" or
  blank) is shown, timed in the page: drawn by the browser at once (journal.js), or by
  the server's answer (the bare app: its caption);
- rerun_p95_ms: server-side script/fragment run time during the scripted session
  (Ballast: ``ballast_ui_rerun_seconds`` from /metrics, the 1 s status poll left out;
  bare: a timer around the script run);
- layout_shift_total: sum of every layout-shift entry (PerformanceObserver, buffered)
  that started after the first contentful paint, inputs included. For Ballast, the
  sign-in comes first on a page load of its own (the bare app has none); the measured
  page load is the Workbench's, signed in by the session cookie.
- title_top_spread_px (Ballast only): max - min over every page in the navigation of
  where the page's title starts (its heading's top, px from the top of the document),
  taken after the measurements above; 0 when no page change moves the title.
- table_commit_lost of table_commit_trials: a click on a data editor's "add row" row,
  then a title typed the moment the new row's cell editor has the focus and committed
  with Enter, on an empty table each time (a new project; the bare app: a new page);
  lost when no edit state the browser sends within 2 s holds the title. The cell
  editor commits in a timer each key sets, and a character's timer that runs after
  Enter (the page busy drawing the answer to the added row) closes it with nothing
  committed; Ballast holds Enter back until those timers ran (lib/grid_keys.js):
  target 0. The bare app shows what Streamlit alone does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from ballast_testing.api import stop_process
from ballast_testing.servers import LocalPostgres
from bench.common import api_process, free_port, percentile, wait_http, write_result

NAVS = 120
TABLE_TRIALS = 20
INTERACTIONS = 120
WARMUP = 10
PAGES = ["Home", "Projects", "Audit", "Admin", "Settings"]
BARE_APP = Path(__file__).with_name("bare_ui") / "app.py"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Layout shifts after the first contentful paint, summed in the page.
INIT_JS = """
window.__shift = 0; window.__fcp = null;
new PerformanceObserver((l) => { for (const e of l.getEntries())
  if (e.name === 'first-contentful-paint') window.__fcp = e.startTime; })
  .observe({type: 'paint', buffered: true});
new PerformanceObserver((l) => { for (const e of l.getEntries())
  if (window.__fcp !== null && e.startTime >= window.__fcp) window.__shift += e.value; })
  .observe({type: 'layout-shift', buffered: true});
"""

# Arm a timer: t0 at the next real pointerdown (Playwright's mouse), done when
# ``done()`` holds (checked on every DOM mutation), plus the next animation frame.
ARM_JS = """
(doneSrc) => {
  const done = new Function('return (' + doneSrc + ')();');
  window.__timing = new Promise((resolve, reject) => {
    let t0 = null;
    const finish = () => { mo.disconnect(); requestAnimationFrame(() => resolve(performance.now() - t0)); };
    const mo = new MutationObserver(() => { if (t0 !== null && done()) finish(); });
    document.addEventListener('pointerdown', () => {
      t0 = performance.now();
      mo.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
    }, {capture: true, once: true});
    setTimeout(() => { mo.disconnect(); reject(new Error('timeout')); }, 10000);
  });
}
"""


# Every data-editor edit state the page sends (its JSON, from the WebSocket frames).
EDITS_JS = """
window.__edits = [];
const sendEdits = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  try {
    const text = new TextDecoder().decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    for (const m of text.matchAll(/\\{"edited_rows"[^\\x00-\\x1f]*?"deleted_rows":\\[[^\\]]*\\]\\}/g))
      window.__edits.push(m[0]);
  } catch (err) { /* never in the way of the message */ }
  return sendEdits.call(this, data);
};
"""


def _table_commit_lost(page: Page, open_table: Callable[[int], Any]) -> int:
    """How many of `TABLE_TRIALS` fast commits into a new row the editor never sent."""
    lost = 0
    for i in range(TABLE_TRIALS):
        editor = open_table(i)
        editor.scroll_into_view_if_needed()
        box = editor.locator('[data-testid="stDataFrameResizable"]').bounding_box()
        assert box is not None
        page.evaluate("() => { window.__edits = []; }")
        # The editor's last row is the "add row" row; the new row's cell opens at once
        # (a click before the grid took its first events is made again).
        cell = page.locator("textarea.gdg-input")
        for attempt in range(3):
            page.mouse.click(box["x"] + 100, box["y"] + box["height"] - 17)
            try:
                cell.wait_for(timeout=3000)
                break
            except PlaywrightTimeoutError:
                if attempt == 2:
                    raise
        page.wait_for_function(
            "() => document.activeElement?.matches('textarea.gdg-input')"
        )
        title = f"Milestone {i}"
        page.keyboard.type(title)
        cell.press("Enter")
        try:
            page.wait_for_function(
                "(t) => window.__edits.some((e) => e.includes(t))",
                arg=title,
                timeout=2000,
            )
        except PlaywrightTimeoutError:
            lost += 1
    return lost


def _timed_click(page: Page, sel: str, done: str) -> float:
    page.evaluate(ARM_JS, done)
    page.locator(sel).first.click()
    return float(page.evaluate("window.__timing"))


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    # The child inherits the caller's environment plus the bench settings.
    return {**os.environ, "BALLAST_LOG_LEVEL": "WARNING", **extra}  # noqa: TID251


@contextlib.contextmanager
def _streamlit(args: list[str], env: Mapping[str, str], port: int) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/_stcore/health", 90)
        yield base
    finally:
        stop_process(proc)


def _histogram(base: str) -> dict[float, float]:
    """Cumulative bucket counts of the rerun histogram, poll runs left out."""
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if (
            not line.startswith("ballast_ui_rerun_seconds_bucket{")
            or 'trigger="poll"' in line
        ):
            continue
        labels, value = line.rsplit(" ", 1)
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + float(value)
    return out


def _hist_p95_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """p95 of the runs between two scrapes (linear inside the bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return 0.0
    want = 0.95 * total
    lower, prev = 0.0, 0.0
    for bound, cum in zip(bounds, counts, strict=True):
        if cum >= want:
            if bound == float("inf"):
                return lower * 1000
            frac = (want - prev) / (cum - prev) if cum > prev else 1.0
            return (lower + (bound - lower) * frac) * 1000
        lower, prev = bound, cum
    return lower * 1000


def _measure(
    page: Page, nav_sel: Any, nav_done: Any, toggle_sel: str, toggle_done: str
) -> dict[str, Any]:
    navs: list[float] = []
    order = [p for p in PAGES if p != "Projects"]
    for i in range(WARMUP + NAVS):
        # Alternate Projects with the others: every click is a real page change.
        target = "Projects" if i % 2 else order[(i // 2) % len(order)]
        ms = _timed_click(page, nav_sel(target), nav_done(target))
        if i >= WARMUP:
            navs.append(ms)
        page.wait_for_timeout(30)
    _timed_click(page, nav_sel("Projects"), nav_done("Projects"))
    page.wait_for_timeout(500)
    interacts: list[float] = []
    for i in range(WARMUP + INTERACTIONS):
        ms = _timed_click(page, toggle_sel, toggle_done)
        if i >= WARMUP:
            interacts.append(ms)
        page.wait_for_timeout(60)
    return {
        "nav_p50_ms": round(percentile(navs, 50), 1),
        "nav_p95_ms": round(percentile(navs, 95), 1),
        "interact_p95_ms": round(percentile(interacts, 95), 1),
        "layout_shift_total": round(float(page.evaluate("window.__shift")), 4),
        "navigations": len(navs),
        "interactions": len(interacts),
    }


def _ballast(
    page: Page,
    base: str,
    metrics: str,
    project_id: str,
    new_project: Callable[[str], str],
) -> dict[str, Any]:
    page.goto(f"{base}/?page=projects&id={project_id}")
    page.get_by_label("Username").fill("admin")
    page.get_by_role("textbox", name="Password").fill("admin-demo-pass")
    page.get_by_role("button", name="Sign in").click()
    page.locator(".ballast-nav").wait_for()
    # The bare app has no sign-in: the measured session starts with a fresh load of
    # the Workbench (the session cookie signs it in), as the bare one starts with its.
    page.goto(f"{base}/?page=projects&id={project_id}")
    page.locator(".ballast-nav").wait_for()
    page.get_by_role("checkbox", name="Public").wait_for(state="attached")
    page.wait_for_timeout(1500)
    before = _histogram(metrics)
    result = _measure(
        page,
        lambda name: f"nav.ballast-nav a[data-page='{name.lower()}']",
        lambda name: (
            f"() => {{ const b = document.querySelector('.st-key-bpage-{name.lower()}');"
            " return !!b && b.offsetParent !== null && !!b.querySelector('h1, h2, h3'); }"
        ),
        "[class*='is_public'] label",
        # The field's note flips between "● modified" and blank: as shown, whether
        # the browser drew it (data-bnote, at once) or the server's rerun did.
        "() => { const w = window; const n = [...document.querySelectorAll("
        "'.st-key-bpage-projects [data-testid=\"stCaptionContainer\"]')]"
        ".filter((c) => { const h = c.closest('[data-bnote]');"
        " return h ? h.dataset.bnote === 'modified' : c.textContent.includes('modified'); })"
        ".length;"
        " if (w.__lastMod === undefined) { w.__lastMod = n; return false; }"
        " if (n !== w.__lastMod) { w.__lastMod = n; return true; } return false; }",
    )
    result["rerun_p95_ms"] = round(_hist_p95_ms(before, _histogram(metrics)), 1)
    result["title_top_spread_px"] = _title_top_spread(page)

    def open_table(i: int) -> Any:
        page.goto(f"{base}/?page=projects&id={new_project(f'Bench table {i}')}")
        return page.locator(".st-key-bpage-projects [data-testid='stDataFrame']")

    result["table_commit_lost"] = _table_commit_lost(page, open_table)
    result["table_commit_trials"] = TABLE_TRIALS
    return result


def _title_top_spread(page: Page) -> float:
    """Max - min of the title's top over every page of the Workbench's navigation."""
    tops = []
    names = page.eval_on_selector_all(
        "nav.ballast-nav a[data-page]", "(as) => as.map((a) => a.dataset.page)"
    )
    for name in names:
        page.locator(f"nav.ballast-nav a[data-page='{name}']").click()
        title = page.locator(f".st-key-bpage-{name}").locator("h1, h2, h3").first
        title.wait_for(state="visible")
        tops.append(
            float(title.evaluate("(e) => e.getBoundingClientRect().top + scrollY"))
        )
    return round(max(tops) - min(tops), 1)


def _bare(page: Page, base: str, log: Path) -> dict[str, Any]:
    page.goto(base)
    page.get_by_role("heading", name="Home").wait_for()
    page.wait_for_timeout(1500)
    start = len(log.read_text().splitlines()) if log.exists() else 0
    result = _measure(
        page,
        lambda name: f"[data-testid='stSidebarNav'] a:has-text('{name}')",
        lambda name: (
            "() => { const h = [...document.querySelectorAll('[data-testid=\"stMain\"] h1')];"
            f" return h.length === 1 && h[0].textContent.trim() === '{name}'"
            " && !h[0].closest('[data-stale=\"true\"]'); }"
        ),
        "[data-testid='stCheckbox'] label",
        "() => { const w = window; const c = [...document.querySelectorAll("
        "'[data-testid=\"stCaptionContainer\"]')].map((e) => e.textContent).join('|');"
        " if (w.__lastCap === undefined) { w.__lastCap = c; return false; }"
        " if (c !== w.__lastCap) { w.__lastCap = c; return true; } return false; }",
    )
    runs = [float(x) for x in log.read_text().splitlines()[start:] if x.strip()]
    result["rerun_p95_ms"] = round(percentile(runs, 95), 1)

    def open_table(_i: int) -> Any:
        page.goto(f"{base}/projects")
        return page.locator("[data-testid='stDataFrame']")

    result["table_commit_lost"] = _table_commit_lost(page, open_table)
    result["table_commit_trials"] = TABLE_TRIALS
    return result


def _reset_marker(page: Page) -> None:
    page.evaluate("() => { delete window.__lastMod; delete window.__lastCap; }")


def run() -> dict[str, Any]:
    with LocalPostgres.throwaway() as pg, tempfile.TemporaryDirectory() as tmp:
        url = pg.create_database("ballast_bench_ui")
        db = DB(url)
        migrate(db=db)
        run_tx(seed_demo, db=db)
        db.dispose()
        log = Path(tmp) / "bare-reruns.log"
        with api_process(url) as api_base:
            token = httpx.post(
                f"{api_base}/v1/sessions",
                json={"username": "admin", "password": "admin-demo-pass"},
            ).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            project_id = httpx.get(f"{api_base}/v1/projects", headers=auth).json()[
                "items"
            ][0]["id"]

            def new_project(name: str) -> str:
                resp = httpx.post(
                    f"{api_base}/v1/projects", json={"name": name}, headers=auth
                )
                resp.raise_for_status()
                return str(resp.json()["id"])

            ui_port, bare_port, metrics_port = free_port(), free_port(), free_port()
            # The UI serves /metrics on its metrics port only.
            ui_metrics = f"http://127.0.0.1:{metrics_port}"
            with (
                _streamlit(
                    ["-m", "ballast_ui"],
                    {
                        "BALLAST_API_URL": api_base,
                        "BALLAST_UI__HOST": "127.0.0.1",
                        "BALLAST_UI__PORT": str(ui_port),
                        "BALLAST_UI__METRICS_PORT": str(metrics_port),
                    },
                    ui_port,
                ) as ui_base,
                _streamlit(
                    [
                        "-m",
                        "streamlit",
                        "run",
                        str(BARE_APP),
                        "--server.port",
                        str(bare_port),
                        "--server.address",
                        "127.0.0.1",
                        "--server.headless",
                        "true",
                        "--browser.gatherUsageStats",
                        "false",
                        "--server.fileWatcherType",
                        "none",
                    ],
                    {"BENCH_RERUN_LOG": str(log)},
                    bare_port,
                ) as bare_base,
                sync_playwright() as pw,
            ):
                browser = pw.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                try:
                    out: dict[str, Any] = {}
                    for name, fn in (
                        (
                            "",
                            lambda p: _ballast(
                                p, ui_base, ui_metrics, project_id, new_project
                            ),
                        ),
                        ("bare_", lambda p: _bare(p, bare_base, log)),
                    ):
                        ctx = browser.new_context(
                            viewport={"width": 1400, "height": 900}
                        )
                        ctx.add_init_script(INIT_JS)
                        ctx.add_init_script(EDITS_JS)
                        page = ctx.new_page()
                        _reset_marker(page)
                        t0 = time.monotonic()
                        res = fn(page)
                        res["duration_s"] = round(time.monotonic() - t0, 1)
                        out.update({f"{name}{k}": v for k, v in res.items()})
                        ctx.close()
                finally:
                    browser.close()
    write_result("ui", out)
    return out


if __name__ == "__main__":
    print(run())
