"""End-to-end: background jobs in Chromium — start, leave, come back, cancel, retry,
refresh while a job runs, and the finish toasts.

This module runs a stack of its own (api + Celery worker + ui) on a private Redis
broker and a private data directory, sharing only the e2e database (demo users).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from ballast_testing.servers import free_port, throwaway_redis
from ballast_ui.client import ApiClient, make_http
from tests.e2e.conftest import (
    PASSWORDS,
    Proc,
    _env,
    login,
    no_exception,
    screenshot,
    ui_proc,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Short heartbeats and a short cancel grace, so cancellation is quick.
WORKER_SETTINGS = {
    "BALLAST_JOBS__HEARTBEAT_S": "0.3",
    "BALLAST_JOBS__LEASE_S": "3",
    "BALLAST_JOBS__SWEEP_INTERVAL_S": "0.2",
    "BALLAST_JOBS__PROGRESS_INTERVAL_S": "0.1",
    "BALLAST_JOBS__CANCEL_GRACE_S": "1.5",
}
WORKER_ARGS = ("--concurrency", "2", "--loglevel", "WARNING")


@pytest.fixture(scope="module")
def jobs_env(
    stack_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Settings shared by this module's api and worker: database, broker, data dir."""
    with throwaway_redis() as broker:
        root = tmp_path_factory.mktemp("e2e-jobs")
        yield {
            "BALLAST_DATABASE__URL": stack_db,
            "BALLAST_JOBS__BROKER_URL": broker.url,
            "BALLAST_PATHS__DATA_DIR": str(root / "data"),
            "BALLAST_LOG_LEVEL": "WARNING",
            **WORKER_SETTINGS,
        }


@pytest.fixture(scope="module")
def jobs_api(
    jobs_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An api that sends job messages to the module's broker; yields its base URL."""
    port = free_port()
    proc = Proc(
        "jobs-api",
        [sys.executable, "-m", "ballast_api"],
        _env(**jobs_env, BALLAST_API__HOST="127.0.0.1", BALLAST_API__PORT=str(port)),
        f"http://127.0.0.1:{port}/healthz",
        tmp_path_factory.mktemp("e2e-jobs-logs") / "api.log",
    )
    proc.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


class WorkerProc:
    """A real worker process (prefork, two processes); spawned at once, waited for later
    so it boots while the api and the ui start."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ballast_jobs", "worker", *WORKER_ARGS],
                env=_env(**env, BALLAST_JOBS__METRICS_PORT=str(self.port)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 90) -> None:
        """Until its /metrics answers (the worker is consuming by then)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/metrics"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready:\n{self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def jobs_worker(
    jobs_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProc]:
    """The module's worker (not waited for here; see `jobs_ui`)."""
    worker = WorkerProc(jobs_env, tmp_path_factory.mktemp("e2e-jobs-worker") / "w.log")
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def jobs_ui(
    jobs_worker: WorkerProc,
    jobs_api: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The ui on this module's api, once the worker is ready too (the worker boots
    while the api and the ui start)."""
    proc = ui_proc(
        "jobs-ui", jobs_api, tmp_path_factory.mktemp("e2e-jobs-ui") / "ui.log"
    )
    proc.start()
    try:
        jobs_worker.wait_ready()
        yield proc.health_url.removesuffix("/_stcore/health")
    finally:
        proc.stop()


@pytest.fixture
def editor_api(jobs_api: str) -> Iterator[ApiClient]:
    """The api as the editor (the same user the browser signs in as)."""
    http = make_http(jobs_api)
    try:
        api = ApiClient(http)
        yield api.with_token(api.login("editor", PASSWORDS["editor"]).token)
    finally:
        http.close()


def nav(page: Page, name: str) -> None:
    page.locator(".ballast-nav").get_by_role("link", name=re.compile(name)).click()
    expect(page).to_have_url(re.compile(f"page={name.lower()}"))
    expect(page.locator(f".st-key-bpage-{name.lower()}")).to_be_visible()


def job_row(page: Page, job_id: str) -> Locator:
    """The Jobs page row of one job (rows show the first 8 characters of the id)."""
    return page.locator('[class*="st-key-jobs-row-"]').filter(has_text=job_id[:8])


def progress_of(row: Locator) -> float:
    """The row's progress bar value (0..100)."""
    bar = row.get_by_role("progressbar")
    return float(bar.get_attribute("aria-valuenow") or 0)


def wait_progress_above(row: Locator, value: float, timeout_s: float = 15.0) -> float:
    """Wait until the polling fragment shows the row's progress past ``value``."""
    deadline = time.monotonic() + timeout_s
    seen = progress_of(row)
    while seen <= value and time.monotonic() < deadline:
        row.page.wait_for_timeout(200)
        seen = progress_of(row)
    assert seen > value, f"progress stayed at {seen} (was {value}) for {timeout_s} s"
    return seen


def toast(page: Page, text: str) -> Locator:
    return page.locator('[data-testid="stToast"]').filter(has_text=text)


def test_jobs_survive_navigation_and_refresh_and_can_be_cancelled(
    context: BrowserContext,
    jobs_ui: str,
    editor_api: ApiClient,
    tmp_path: Path,
) -> None:
    page = context.new_page()
    login(page, jobs_ui, "editor")

    # Start a job in the UI: import a CSV on the Data page; its toast follows.
    nav(page, "Data")
    csv = tmp_path / "measurements.csv"
    csv.write_text("x,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(200)))
    page.locator('[data-testid="ballast-file-input"]').set_input_files(str(csv))
    # The upload is sent and kept before Import can use it.
    expect(page.get_by_text("Kept: measurements.csv")).to_be_visible()
    page.get_by_role("button", name="Import").click()
    # The toast first: it shows as soon as the job ends and is gone a few seconds later,
    # possibly before the Data page has redrawn its dataset as ready.
    expect(toast(page, "Job datasets.import completed")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"measurements · ready"))).to_be_visible(
        timeout=30_000
    )
    no_exception(page)

    # Two long jobs of the same user: one to follow, one to cancel.
    follow = str(editor_api.create_job("demo.sleep", {"seconds": 25, "steps": 250}).id)
    stop = str(editor_api.create_job("demo.sleep", {"seconds": 120, "steps": 120}).id)

    nav(page, "Jobs")
    followed = job_row(page, follow)
    expect(followed).to_contain_text("running", timeout=10_000)
    expect(job_row(page, stop)).to_contain_text("running", timeout=10_000)
    first = progress_of(followed)

    # Leave and come back: the job kept running and the page re-attaches to it.
    nav(page, "Home")
    away_at = editor_api.get_job(follow).progress
    deadline = time.monotonic() + 15
    while editor_api.get_job(follow).progress <= away_at:
        assert time.monotonic() < deadline, "the job made no progress while away"
        time.sleep(0.2)
    nav(page, "Jobs")
    expect(followed).to_contain_text("running")
    wait_progress_above(followed, first)
    screenshot(page, "jobs-running")

    # Cancel the other one from its row.
    job_row(page, stop).get_by_role("button", name="Cancel").click()
    expect(job_row(page, stop)).to_contain_text("cancelled", timeout=15_000)
    expect(job_row(page, stop).get_by_role("button", name="Retry")).to_be_enabled()

    # Refresh while the first still runs: same page, same job, still progressing.
    before = progress_of(followed)
    assert editor_api.get_job(follow).status == "RUNNING"
    page.reload()
    expect(page).to_have_url(re.compile("page=jobs"))
    expect(followed).to_contain_text("running", timeout=10_000)
    wait_progress_above(followed, before)
    # It finishes on its own; a toast says so (watched first: it is gone a few seconds
    # later, possibly before the list's own refresh) and the list shows it.
    expect(toast(page, "Job demo.sleep completed")).to_be_visible(timeout=40_000)
    expect(followed).to_contain_text("completed", timeout=15_000)
    assert progress_of(followed) == 100
    no_exception(page)

    # Retry the cancelled job from its row: it runs again.
    job_row(page, stop).get_by_role("button", name="Retry").click()
    expect(job_row(page, stop)).to_contain_text("running", timeout=15_000)
    screenshot(page, "jobs-retried")
    editor_api.cancel_job(stop)
    expect(job_row(page, stop)).to_contain_text("cancelled", timeout=15_000)

    # The database agrees with the page.
    assert editor_api.get_job(follow).status == "COMPLETED"
    assert editor_api.get_job(stop).status == "CANCELLED"
