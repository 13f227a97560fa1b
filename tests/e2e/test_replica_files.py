"""End-to-end: the file field behind two UI replicas without session affinity.

Streamlit's own uploader PUTs the file to ``/_stcore/upload_file/<session>/…``, which
only the process holding the session takes: through a proxy that alternates every
request, one choice in two failed. Ballast's file field reads the file in the browser
and sends it on the session's WebSocket, so every choice lands: a project's attachment
(metadata, and content when small) and a Data page import (the whole content, larger
than a draft keeps) reach the database exactly as chosen.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from playwright.sync_api import BrowserContext, FilePayload, expect

from tests.e2e.conftest import editor_draft, no_exception, wait_saved
from tests.e2e.no_affinity_proxy import NoAffinityProxy
from tests.e2e.test_jobs_page import nav
from tests.e2e.test_replicas import proxy, pytestmark, replicas  # noqa: F401
from tests.e2e.test_zero_loss import PATIENCE_MS, _patient, open_project  # noqa: F401

# The fixtures imported above: `replicas` (two ui processes), `proxy` (alternating
# between them), `_patient` (autouse: the waits of the other e2e modules).
Sql = Callable[..., list[tuple[object, ...]]]


def test_files_chosen_behind_replicas_without_affinity_all_land(
    context: BrowserContext,
    proxy: NoAffinityProxy,  # noqa: F811
    new_project: Callable[..., str],
    sql: Sql,
) -> None:
    pid = new_project("E2E replica files")
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    open_project(page, proxy.url, pid)
    box = page.locator(".st-key-bpage-projects")
    field = box.locator('[data-testid="ballast-file-input"]')
    rng = random.Random(7)
    # Several choices in a row: with an upload URL per process, consecutive uploads
    # alternate between the replicas and every other one is refused.
    chosen = [
        ("first.txt", b"first file"),
        ("second.bin", rng.randbytes(40_000)),
        ("third.bin", rng.randbytes(200_000)),  # larger than a draft keeps inline
    ]
    for name, data in chosen:
        field.set_input_files(
            files=FilePayload(
                name=name, mimeType="application/octet-stream", buffer=data
            )
        )
        expect(box.get_by_text(f"Kept: {name} ({len(data):,} bytes)")).to_be_visible()
    wait_saved(page)
    name, data = chosen[-1]
    draft = editor_draft(sql, pid, "attachment")
    assert isinstance(draft, dict)
    assert draft["name"] == name
    assert draft["size"] == len(data)
    assert draft["sha256"] == hashlib.sha256(data).hexdigest()
    assert draft["content_b64"] is None
    # Nothing went to a process's upload URL.
    assert not [x for x in proxy.served if "/_stcore/upload_file" in x[1]]

    # A refresh (a new WebSocket, maybe on the other replica) names the kept file.
    page.reload()
    expect(box.get_by_role("textbox", name="Name")).to_be_visible(timeout=PATIENCE_MS)
    expect(box.get_by_text(f"Kept: {name} ({len(data):,} bytes)")).to_be_visible(
        timeout=PATIENCE_MS
    )

    # The Data page's import needs the whole content in the session: a file larger
    # than a draft keeps, imported through the same field.
    nav(page, "Data")
    rows = "".join(f"{i},{rng.random():.12f}\n" for i in range(12_000))
    csv = ("x,y\n" + rows).encode()
    assert len(csv) > 200_000
    # Unique: the e2e database is shared (test_direct_upload imports a "replicas.csv").
    filename = f"replica-files-{pid[:8]}.csv"
    data_box = page.locator(".st-key-bpage-data")
    data_box.locator('[data-testid="ballast-file-input"]').set_input_files(
        files=FilePayload(name=filename, mimeType="text/csv", buffer=csv)
    )
    expect(
        data_box.get_by_text(f"Kept: {filename} ({len(csv):,} bytes)")
    ).to_be_visible()
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text(f"Importing {filename}")).to_be_visible()
    ((size, sha),) = sql(
        "SELECT size_bytes, sha256 FROM datasets WHERE filename = %s",
        (filename,),
    )
    assert (size, sha) == (len(csv), hashlib.sha256(csv).hexdigest())
    no_exception(page)
