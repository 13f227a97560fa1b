"""End-to-end: a file larger than the api's body limit goes from Chromium straight to
the S3 server (presigned parts, through the ui's /_ballast/uploads routes), the Data
page shows its progress, and the dataset is imported with its checksum recorded.

This module runs a stack of its own (api + Celery worker + ui) on a private Redis
broker and a fresh bucket of the S3 test server, sharing only the e2e database.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from ballast_testing.s3 import S3Server
from ballast_testing.servers import free_port, throwaway_redis
from tests.e2e.conftest import (
    PASSWORDS,
    Proc,
    _env,
    login,
    no_exception,
    screenshot,
    ui_proc,
)
from tests.e2e.no_affinity_proxy import NoAffinityProxy
from tests.e2e.test_jobs_page import WorkerProc

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# The api takes at most 1 MB in a request body; the file is ~12 MB (three 5 MiB parts).
MAX_BODY_MB = "1"
ROWS = 800_000


@pytest.fixture(scope="module")
def ui_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def proxy_port() -> int:
    """The port of the proxy in front of two ui replicas (an origin the bucket allows)."""
    return free_port()


@pytest.fixture(scope="module")
def upload_env(
    stack_db: str,
    s3_server: S3Server,
    ui_port: int,
    proxy_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """Settings shared by the module's api and worker: database, broker, bucket."""
    bucket = s3_server.create_bucket()
    with throwaway_redis() as broker:
        yield {
            "BALLAST_DATABASE__URL": stack_db,
            "BALLAST_JOBS__BROKER_URL": broker.url,
            "BALLAST_PATHS__DATA_DIR": str(tmp_path_factory.mktemp("e2e-up") / "data"),
            "BALLAST_LOG_LEVEL": "WARNING",
            "BALLAST_S3__ENDPOINT_URL": s3_server.endpoint_url,
            "BALLAST_S3__BUCKET": bucket,
            "BALLAST_S3__REGION": s3_server.region,
            "BALLAST_S3__ACCESS_KEY_ID": s3_server.access_key,
            "BALLAST_S3__SECRET_ACCESS_KEY": s3_server.secret_key,
            # The browser PUTs from the ui's origin: the api sets the bucket's CORS rule.
            "BALLAST_S3__CORS_ORIGINS": json.dumps(
                [f"http://127.0.0.1:{port}" for port in (ui_port, proxy_port)]
            ),
            "BALLAST_DATASETS__MAX_UPLOAD_MB": MAX_BODY_MB,
            "BALLAST_DATASETS__UPLOAD_PART_MB": "5",
        }


@pytest.fixture(scope="module")
def upload_api(
    upload_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    proc = Proc(
        "upload-api",
        [sys.executable, "-m", "ballast_api"],
        _env(**upload_env, BALLAST_API__HOST="127.0.0.1", BALLAST_API__PORT=str(port)),
        f"http://127.0.0.1:{port}/healthz",
        tmp_path_factory.mktemp("e2e-up-logs") / "api.log",
    )
    proc.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def upload_ui(
    upload_env: dict[str, str],
    upload_api: str,
    ui_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The ui on the module's api, once the module's worker is ready too."""
    worker = WorkerProc(upload_env, tmp_path_factory.mktemp("e2e-up-w") / "w.log")
    proc = _ui("upload-ui", upload_api, ui_port, tmp_path_factory)
    try:
        proc.start()
        worker.wait_ready()
        yield f"http://127.0.0.1:{ui_port}"
    finally:
        proc.stop()
        worker.stop()


def _ui(
    name: str, api: str, port: int, tmp_path_factory: pytest.TempPathFactory
) -> Proc:
    """A ui process on `api`, listening on `port` (not started)."""
    return ui_proc(
        name, api, tmp_path_factory.mktemp(f"e2e-{name}") / "ui.log", port=port
    )


def throttle(context: BrowserContext, page: Page, bytes_per_s: int) -> None:
    """Slow the page's uploads down (Chromium's network emulation)."""
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_s,
        },
    )


def test_a_file_beyond_the_body_limit_goes_straight_to_storage(
    context: BrowserContext,
    upload_ui: str,
    upload_api: str,
    sql: Callable[[str, tuple[object, ...]], list[tuple[object, ...]]],
    tmp_path: Path,
) -> None:
    csv = tmp_path / "sensors.csv"
    csv.write_text(
        "t,value\n" + "".join(f"{i},{(i * 37) % 1009 / 7:.4f}\n" for i in range(ROWS))
    )
    data = csv.read_bytes()
    assert len(data) > 2 * 5 * 1024 * 1024  # three parts
    # The api's own upload refuses it: the body limit is 1 MB.
    token = httpx.post(
        f"{upload_api}/v1/sessions",
        json={"username": "editor", "password": PASSWORDS["editor"]},
    ).json()["token"]
    refused = httpx.post(
        f"{upload_api}/v1/datasets",
        params={"name": "too big"},
        content=data,
        headers={"Authorization": f"Bearer {token}", "X-Filename": "sensors.csv"},
        timeout=60,
    )
    assert refused.status_code == 413

    page = context.new_page()
    login(page, upload_ui, "editor", "/?page=data")
    expect(page.locator(".st-key-bpage-data")).to_be_visible()
    bar = page.locator('[data-testid="ballast-upload-progress"]')
    status = page.locator('[data-testid="ballast-upload-status"]')
    expect(bar).to_be_visible()
    # Slow uploads down (4 MB/s) so the progress is seen moving, not only at its end.
    throttle(context, page, 4_000_000)
    page.locator('[data-testid="ballast-upload-file"]').set_input_files(str(csv))
    page.locator('[data-testid="ballast-upload-start"]').click()

    expect(status).to_contain_text(re.compile(r"Uploading: .* of 1\d\.\d MB"))
    fractions = []
    while len(fractions) < 400:
        value = float(bar.evaluate("el => el.value"))
        fractions.append(value)
        if value >= 1:
            break
        page.wait_for_timeout(25)
    partial = [f for f in fractions if 0 < f < 1]
    assert len(set(partial)) >= 3, fractions  # it moved in steps, not at once
    assert fractions == sorted(fractions)  # and never went back
    screenshot(page, "direct-upload-progress")

    # The page follows the dataset's import to the end.
    expect(page).to_have_url(re.compile(r"id=[0-9a-f-]{36}"), timeout=30_000)
    expect(page.get_by_text(re.compile(r"sensors · ready"))).to_be_visible(
        timeout=60_000
    )
    expect(page.get_by_text(f"{ROWS:,} rows", exact=False)).to_be_visible()
    no_exception(page)
    screenshot(page, "direct-upload-imported")
    dataset_id = re.search(r"id=([0-9a-f-]{36})", page.url)
    assert dataset_id is not None
    [(size, sha, rows)] = sql(
        "SELECT size_bytes, sha256, row_count FROM datasets WHERE id = %s",
        (dataset_id.group(1),),
    )
    assert (size, sha, rows) == (len(data), hashlib.sha256(data).hexdigest(), ROWS)
    # The record that would resume it is gone with the finished upload.
    assert (
        page.evaluate(
            "() => Object.keys(localStorage).filter(k => k.startsWith('ballast.uploads.'))"
        )
        == []
    )


def test_a_refresh_in_the_middle_resumes_the_upload(
    context: BrowserContext,
    upload_ui: str,
    upload_api: str,
    sql: Callable[[str, tuple[object, ...]], list[tuple[object, ...]]],
    tmp_path: Path,
) -> None:
    rows = 2_000_000  # ~22 MB: five parts, three sent at once
    csv = tmp_path / "resumed.csv"
    csv.write_text("t,v\n" + "".join(f"{i},{i % 997}\n" for i in range(rows)))
    data = csv.read_bytes()
    count = -(-len(data) // (5 * 1024 * 1024))
    assert count == 5
    token = httpx.post(
        f"{upload_api}/v1/sessions",
        json={"username": "editor", "password": PASSWORDS["editor"]},
    ).json()["token"]
    page = context.new_page()
    login(page, upload_ui, "editor", "/?page=data")
    throttle(context, page, 3_000_000)
    page.locator('[data-testid="ballast-upload-file"]').set_input_files(str(csv))
    page.locator('[data-testid="ballast-upload-start"]').click()
    status = page.locator('[data-testid="ballast-upload-status"]')
    expect(status).to_contain_text("Uploading:")

    # The browser remembers the upload; wait until the store holds some of its parts.
    def kept() -> list[dict[str, object]]:
        return list(page.evaluate("""() => Object.keys(localStorage)
                    .filter(k => k.startsWith('ballast.uploads.'))
                    .flatMap(k => JSON.parse(localStorage.getItem(k)))"""))

    [record] = kept()
    assert (record["name"], record["size"]) == ("resumed.csv", len(data))
    held: list[dict[str, object]] = []
    for _ in range(300):
        held = httpx.get(
            f"{upload_api}/v1/uploads/{record['id']}",
            headers={"Authorization": f"Bearer {token}"},
        ).json()["parts"]
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "no part arrived"
    assert len(held) < count

    # Refresh mid-upload: the page comes back; choosing the same file resumes it.
    page.reload()
    expect(page.locator('[data-testid="ballast-upload-start"]')).to_be_visible()
    assert [r["id"] for r in kept()] == [record["id"]]
    stored = len(
        httpx.get(
            f"{upload_api}/v1/uploads/{record['id']}",
            headers={"Authorization": f"Bearer {token}"},
        ).json()["parts"]
    )
    assert 0 < stored < count
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    page.locator('[data-testid="ballast-upload-file"]').set_input_files(str(csv))
    page.locator('[data-testid="ballast-upload-start"]').click()
    expect(status).to_contain_text(
        f"resumed: {stored} of {count} parts were already stored", timeout=60_000
    )
    # Only the parts the store did not hold went again.
    assert len(puts) == count - stored, puts
    expect(page).to_have_url(re.compile(r"id=[0-9a-f-]{36}"), timeout=60_000)
    expect(page.get_by_text(re.compile(r"resumed · ready"))).to_be_visible(
        timeout=60_000
    )
    no_exception(page)
    dataset_id = re.search(r"id=([0-9a-f-]{36})", page.url)
    assert dataset_id is not None
    [(size, sha, count)] = sql(
        "SELECT size_bytes, sha256, row_count FROM datasets WHERE id = %s",
        (dataset_id.group(1),),
    )
    assert (size, sha, count) == (len(data), hashlib.sha256(data).hexdigest(), rows)
    assert kept() == []


def test_two_replicas_without_affinity_take_a_direct_upload(
    context: BrowserContext,
    upload_ui: str,
    upload_api: str,
    proxy_port: int,
    sql: Callable[[str, tuple[object, ...]], list[tuple[object, ...]]],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two ui replicas behind a proxy without affinity: every request of the upload
    (the ui's routes, the component's files) is served by the replica that does not
    hold the page's session, and the file still arrives and is imported."""
    del upload_ui  # the module's worker must run
    ports = [free_port(), free_port()]
    replicas = [
        _ui(f"ui-r{i}", upload_api, port, tmp_path_factory)
        for i, port in enumerate(ports)
    ]
    csv = tmp_path / "replicas.csv"
    csv.write_text("k,v\n" + "".join(f"{i},{i % 13}\n" for i in range(600_000)))
    data = csv.read_bytes()
    assert len(data) > 5 * 1024 * 1024  # two parts, and past the 1 MB body limit
    try:
        for proc in replicas:
            proc.start()
        backends = [("127.0.0.1", port) for port in ports]
        with NoAffinityProxy(backends, port=proxy_port) as proxy:
            page = context.new_page()
            login(page, proxy.url, "editor", "/?page=data")
            page.locator('[data-testid="ballast-upload-file"]').set_input_files(
                str(csv)
            )
            page.locator('[data-testid="ballast-upload-start"]').click()
            expect(page).to_have_url(re.compile(r"id=[0-9a-f-]{36}"), timeout=60_000)
            expect(page.get_by_text(re.compile(r"replicas · ready"))).to_be_visible(
                timeout=60_000
            )
            no_exception(page)
            served = list(proxy.served)
    finally:
        for proc in replicas:
            proc.stop()
    session = [port for port, line in served if "/_stcore/stream" in line][-1]
    uploads = {port for port, line in served if "/_ballast/uploads" in line}
    assert uploads, served
    assert session not in uploads, served
    dataset_id = re.search(r"id=([0-9a-f-]{36})", page.url)
    assert dataset_id is not None
    [(size, sha)] = sql(
        "SELECT size_bytes, sha256 FROM datasets WHERE id = %s", (dataset_id.group(1),)
    )
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
