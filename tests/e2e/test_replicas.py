"""End-to-end: two UI replicas behind a proxy without session affinity (each refresh on
the other replica, every plain request on a replica that does not hold the session). Sign-in, the session cookie hand-off, typing, refreshes (each one a
new WebSocket on the other replica), a replica going away and saving lose nothing and
never sign the user out."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from ballast_testing.servers import LOOPBACK
from tests.e2e.conftest import Proc, no_exception, ui_proc, wait_saved
from tests.e2e.no_affinity_proxy import NoAffinityProxy
from tests.e2e.test_phantom import LIST_URL
from tests.e2e.test_zero_loss import PATIENCE_MS, open_project

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

Sql = Callable[..., list[tuple[object, ...]]]


@pytest.fixture(scope="module")
def replicas(
    api_server: Proc, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Proc]]:
    """Two ui processes on the same api, each on a port of its own."""
    logs = tmp_path_factory.mktemp("e2e-replicas")
    procs = [
        ui_proc(name, api_server, logs / f"{name}.log") for name in ("ui-a", "ui-b")
    ]
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def _port(proc: Proc) -> int:
    match = re.search(r":(\d+)/", proc.health_url)
    assert match is not None
    return int(match.group(1))


@pytest.fixture
def proxy(replicas: list[Proc]) -> Iterator[NoAffinityProxy]:
    with NoAffinityProxy([(LOOPBACK, _port(p)) for p in replicas]) as proxy_:
        yield proxy_


def test_two_replicas_without_affinity_lose_nothing(
    context: BrowserContext,
    replicas: list[Proc],
    proxy: NoAffinityProxy,
    new_project: Callable[..., str],
    sql: Sql,
) -> None:
    pid = new_project("E2E replicas")
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    open_project(page, proxy.url, pid)
    # Both replicas served this page's requests (the proxy alternates every one).
    assert all(proxy.hits[port] > 0 for _host, port in proxy.backends), proxy.hits
    box = page.locator(".st-key-bpage-projects")
    name = box.get_by_role("textbox", name="Name")
    name.fill("E2E replicas, typed")
    name.press("Tab")
    expect(box.get_by_text("● 1 unsaved")).to_be_visible()
    wait_saved(page)

    # Each refresh is a new page load and a new WebSocket, on one replica or the
    # other: still signed in, the typed name still there.
    for _ in range(4):
        before = dict(proxy.hits)
        page.reload()
        expect(page.locator(".ballast-nav")).to_be_visible()
        expect(page.get_by_role("button", name="Sign in")).to_have_count(0)
        expect(box.get_by_role("textbox", name="Name")).to_have_value(
            "E2E replicas, typed"
        )
        assert dict(proxy.hits) != before
        no_exception(page)

    # The WebSockets (a session each) and the cookie hand-offs were served by both.
    streams = [port for port, line in proxy.served if "/_stcore/stream" in line]
    assert len(set(streams)) == 2, proxy.served
    # The session cookie was handed off by a replica that did not serve the sign-in.
    ((hand_off, _),) = [x for x in proxy.served if x[1] == "POST /_ballast/session"]
    assert hand_off != streams[0], proxy.served

    # One replica goes away (a rolling restart): the page reconnects through the
    # proxy to the one left, and nothing typed meanwhile is lost.
    replicas[0].stop()
    try:
        proxy.backends = [proxy.backends[1]]
        desc = box.get_by_role("textbox", name="Description")
        desc.fill("typed while a replica was away")
        desc.press("Tab")
        wait_saved(page)
        page.reload()
        expect(box.get_by_role("textbox", name="Description")).to_have_value(
            "typed while a replica was away"
        )
        box.get_by_role("button", name="Save").click()
        expect(page).to_have_url(LIST_URL)
    finally:
        replicas[0].start()
    ((row_name, row_desc),) = sql(
        "SELECT name, description FROM projects WHERE id = %s", (pid,)
    )
    assert (row_name, row_desc) == (
        "E2E replicas, typed",
        "typed while a replica was away",
    )
    no_exception(page)


# --------------------------------------------------------------------------- exports
# Self-contained: the export downloads of a finished analysis, through both replicas.

ANALYSIS_RESULT = {
    "dataset_id": "e2e",
    "mode": "fast",
    "columns": {
        "amount": {
            "statistic": "mean",
            "estimate": 2.0,
            "low": 1.5,
            "high": 2.5,
            "confidence": 0.95,
            "n": 2,
            "n_resamples": 1000,
            "hist_edges": [1.5, 2.0, 2.5],
            "hist_counts": [4, 6],
        }
    },
}
EXPORTS = (("CSV", "csv"), ("Excel", "xlsx"), ("Parquet", "parquet"))


def _finished_analysis(stack_db: str, username: str) -> str:
    """A completed analysis job of `username` with its result, as a worker leaves one
    (written directly: no worker runs beside these replicas)."""
    from ballast_common.db import DB, UnitOfWork, run_tx
    from ballast_common.models import Job, JobResult, User, utcnow

    def create(uow: UnitOfWork) -> str:
        user = uow.session.query(User).filter_by(username=username).one()
        job = uow.repo(Job).create(
            name="analysis.bootstrap",
            status="COMPLETED",
            created_by=user.id,
            kwargs={"dataset_id": "e2e", "columns": ["amount"], "mode": "fast"},
            tags=["analysis"],
            progress=1.0,
            completed_at=utcnow(),
        )
        uow.session.add(JobResult(job_id=job.id, data=ANALYSIS_RESULT))
        return str(job.id)

    db = DB(stack_db)
    try:
        return run_tx(create, db=db)
    finally:
        db.dispose()


def _check_export(fmt: str, data: bytes) -> None:
    """The file is the analysis' result in `fmt`, whole."""
    import csv
    import io

    import openpyxl
    import pyarrow.parquet as pq

    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        assert [(r["column"], r["estimate"], r["low"]) for r in rows] == [
            ("amount", "2.0", "1.5")
        ]
    elif fmt == "xlsx":
        assert data[:4] == b"PK\x03\x04"  # a zip: the workbook
        sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).active
        header, *values = [list(row) for row in sheet.iter_rows(values_only=True)]
        assert values[0][header.index("estimate")] == 2.0
    else:
        assert data[:4] == data[-4:] == b"PAR1"
        table = pq.read_table(io.BytesIO(data))
        assert table.column("estimate").to_pylist() == [2.0]


def test_exports_download_from_either_replica(
    context: BrowserContext, proxy: NoAffinityProxy, stack_db: str
) -> None:
    """Each download is a plain request: the proxy sends it to the replica that does
    not hold the page's session, and after a refresh (the session on the other
    replica) to the other one. Every file arrives whole."""
    from pathlib import Path

    from tests.e2e.conftest import login, screenshot

    job_id = _finished_analysis(stack_db, "editor")
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    login(page, proxy.url, "editor", f"/?page=analysis&job={job_id}")
    box = page.locator(".st-key-bpage-analysis")
    links = box.locator(".ballast-export a")
    for round_ in range(2):
        if round_:
            page.reload()  # a new WebSocket, on the other replica
        expect(box.get_by_text("Result · fast mode")).to_be_visible(timeout=PATIENCE_MS)
        expect(links).to_have_count(len(EXPORTS))
        # One row of equal buttons, as tall as Streamlit's own.
        boxes = [b for i in range(len(EXPORTS)) if (b := links.nth(i).bounding_box())]
        assert len(boxes) == len(EXPORTS)
        assert len({(round(b["y"]), round(b["height"])) for b in boxes}) == 1, boxes
        widths = [b["width"] for b in boxes]
        assert max(widths) - min(widths) <= 1, boxes
        assert 38 <= boxes[0]["height"] <= 44, boxes
        links.first.scroll_into_view_if_needed()
        screenshot(page, f"exports-{round_}")
        for label, fmt in EXPORTS:
            link = links.filter(has_text=label)
            expect(link).to_have_attribute("download", re.compile(rf"\.{fmt}$"))
            with page.expect_download() as info:
                link.click()
            download = info.value
            assert download.failure() is None, (fmt, download.failure())
            assert download.suggested_filename.endswith(f".{fmt}")
            _check_export(fmt, Path(download.path()).read_bytes())
        # Still on the page (no navigation, no new tab), nothing broke.
        assert len(context.pages) == 1
        expect(page).to_have_url(re.compile(f"job={job_id}"))
        no_exception(page)

    # Both replicas served downloads, each one while the other held the session.
    exports = []
    holder = None  # the replica holding the page's session (its WebSocket)
    for port, line in proxy.served:
        if "/_stcore/stream" in line:
            holder = port
        elif line.startswith(f"GET /_ballast/exports/jobs/{job_id}?format="):
            exports.append((port, holder))
    assert len(exports) == 2 * len(EXPORTS), proxy.served
    assert {port for port, _ in exports} == {port for _, port in proxy.backends}
    assert all(port != held for port, held in exports), exports
