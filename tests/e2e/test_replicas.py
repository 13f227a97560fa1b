"""End-to-end: two UI replicas behind a proxy without session affinity (each refresh on
the other replica, every plain request on a replica that does not hold the session). Sign-in, the session cookie hand-off, typing, refreshes (each one a
new WebSocket on the other replica), a replica going away and saving lose nothing and
never sign the user out."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from ballast_testing.servers import LOOPBACK, free_port
from tests.e2e.conftest import Proc, _env, api_url_of, no_exception, wait_saved
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
    procs = []
    for name in ("ui-a", "ui-b"):
        port = free_port()
        procs.append(
            Proc(
                name,
                [sys.executable, "-m", "ballast_ui"],
                _env(
                    BALLAST_API_URL=api_url_of(api_server),
                    BALLAST_UI__HOST=LOOPBACK,
                    BALLAST_UI__PORT=str(port),
                    BALLAST_UI__METRICS_PORT=str(free_port()),
                ),
                f"http://{LOOPBACK}:{port}/_stcore/health",
                logs / f"{name}.log",
            )
        )
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
