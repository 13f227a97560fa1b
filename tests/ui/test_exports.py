"""The ui's export route (``GET /_ballast/exports/{kind}/{id}``) and the Data and
Analysis pages' download links to it.

The route is stateless (any replica serves any click): it forwards to the state api
with the session of the HttpOnly cookie and streams the api's file through. Tested
against a real api process (SQLite, a local object store), and, for what a real api
cannot be made to do on cue (hold a file back halfway, fail with a 500), against a
small HTTP server of the test's own.
"""

from __future__ import annotations

import contextlib
import csv
import html
import http.server
import io
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.testclient import TestClient
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from ballast_common.config import AppConfig
from ballast_common.db import DB, migrate, run_tx
from ballast_common.models import (
    Dataset,
    Job,
    JobResult,
    User,
    UserSession,
    utcnow,
)
from ballast_common.security import hash_token, new_token
from ballast_common.seed import seed_demo
from ballast_common.storage import open_store
from ballast_testing.api import api_process
from ballast_testing.servers import LOOPBACK, free_port
from ballast_ui import downloads, exports, server
from ballast_ui.auth import COOKIE_NAME

PASSWORDS = {"editor": "editor-demo-pass", "viewer": "viewer-demo-pass"}
FORMATS = ("csv", "xlsx", "parquet")
TABLE = pa.table(
    {
        "region": ["north", "south", "=cmd|' /C calc'!A0", "ünïcødé"],
        "amount": [1.5, -2.25, 3.0, None],
    }
)


# --------------------------------------------------------------------------- real api


@dataclass
class Stack:
    """A real api process and what the tests need to add rows and files behind it."""

    url: str
    db: DB
    config: AppConfig
    tokens: dict[str, str] = field(default_factory=dict)

    def add_dataset(
        self,
        table: pa.Table = TABLE,
        owner: str = "viewer",
        name: str = "Sales ünï",
        status: str = "READY",
    ) -> uuid.UUID:
        dataset_id = uuid.uuid4()
        key = f"datasets/{dataset_id}/data.parquet"
        sink = io.BytesIO()
        pq.write_table(table, sink)
        sink.seek(0)
        open_store(self.config).put(key, sink)

        def create(uow: Any) -> None:
            user = uow.session.query(User).filter_by(username=owner).one()
            uow.repo(Dataset).create(
                id=dataset_id,
                name=name,
                format="parquet",
                status=status,
                source_key=key,
                data_key=key,
                row_count=table.num_rows,
                created_by=user.id,
            )

        run_tx(create, db=self.db)
        return dataset_id

    def add_result(self, owner: str = "editor") -> uuid.UUID:
        def create(uow: Any) -> uuid.UUID:
            user = uow.session.query(User).filter_by(username=owner).one()
            job = uow.repo(Job).create(
                name="analysis.bootstrap",
                status="COMPLETED",
                created_by=user.id,
                kwargs={},
                completed_at=utcnow(),
            )
            uow.session.add(
                JobResult(
                    job_id=job.id,
                    data={
                        "mode": "fast",
                        "columns": {"amount": {"estimate": 1.5, "low": 1, "high": 2}},
                    },
                )
            )
            return uuid.UUID(str(job.id))

        return run_tx(create, db=self.db)

    def session_of(self, username: str) -> str:
        """A session token for a user without a password (made as the api would)."""
        token = new_token()
        digest = hash_token(token, self.config.security.secret_key.get_secret_value())
        now = utcnow()
        with self.db.session() as session, session.begin():
            user_id = session.execute(
                select(User.id).where(User.username == username)
            ).scalar_one()
            session.add(
                UserSession(
                    user_id=user_id,
                    token_hash=digest,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(hours=1),
                )
            )
        return token

    def direct(self, path: str, user: str, fmt: str) -> httpx.Response:
        """The api's own answer, for comparison."""
        return httpx.get(
            f"{self.url}/v1{path}",
            params={"format": fmt},
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("ui-exports")
    url = f"sqlite:///{root}/api.db"
    db = DB(url)
    migrate(db=db)
    run_tx(seed_demo, db=db)
    config = AppConfig(paths={"data_dir": root / "data"})
    run_tx(
        lambda uow: uow.session.add(User(username="nobody", password_hash="x")),
        db=db,
    )
    try:
        with api_process(
            url, env={"BALLAST_PATHS__DATA_DIR": str(root / "data")}
        ) as base:
            found = Stack(base, db, config)
            for user, password in PASSWORDS.items():
                resp = httpx.post(
                    f"{base}/v1/sessions",
                    json={"username": user, "password": password},
                    timeout=30,
                )
                resp.raise_for_status()
                found.tokens[user] = str(resp.json()["token"])
            yield found
    finally:
        db.dispose()


@contextlib.contextmanager
def ui_client(
    api_url: str, monkeypatch: pytest.MonkeyPatch, token: str | None = None
) -> Iterator[TestClient]:
    """The ui's routes (as the ui server has them) talking to `api_url`."""
    monkeypatch.setenv("BALLAST_API_URL", api_url)
    with TestClient(Starlette(routes=server.ROUTES)) as client:
        if token:
            client.cookies.set(COOKIE_NAME, token)
        try:
            yield client
        finally:
            client.portal.call(exports.aclose)


@pytest.fixture
def ui(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The ui's routes as the viewer (cookie set)."""
    with ui_client(stack.url, monkeypatch, stack.tokens["viewer"]) as client:
        yield client


def href(kind: str, item: object, fmt: str = "csv") -> str:
    return f"/_ballast/exports/{kind}/{item}?format={fmt}"


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    assert body["message"]
    assert isinstance(body["details"], dict)
    return body


# --------------------------------------------------------------------------- the route


def test_the_ui_server_has_the_route() -> None:
    assert {getattr(r, "path", None) for r in exports.ROUTES} <= {
        getattr(r, "path", None) for r in server.ROUTES
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_the_apis_export(ui: TestClient, stack: Stack, fmt: str) -> None:
    dataset_id = stack.add_dataset()
    got = ui.get(href("datasets", dataset_id, fmt))
    want = stack.direct(f"/datasets/{dataset_id}/export", "viewer", fmt)
    assert got.status_code == want.status_code == 200, got.text
    for name in ("content-type", "content-disposition"):
        assert got.headers[name] == want.headers[name]
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["cache-control"] == "no-store"
    assert got.headers["x-content-type-options"] == "nosniff"
    if fmt == "xlsx":
        # A workbook carries the time it was written: compare what it holds.
        assert got.content[:4] == b"PK\x03\x04"

        def cells(data: bytes) -> list[tuple[object, ...]]:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
            return [tuple(row) for row in book.active.iter_rows(values_only=True)]

        assert cells(got.content) == cells(want.content)
        assert cells(got.content)[0] == ("region", "amount")
    else:
        assert got.content == want.content
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
        assert rows[1] == ["north", "1.5"]
        assert rows[3][0] == "'=cmd|' /C calc'!A0"  # neutralised by the api
    if fmt == "parquet":
        assert got.content[:4] == b"PAR1"
        assert pq.read_table(io.BytesIO(got.content)).equals(TABLE)


def test_a_job_result_too(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = stack.add_result("editor")
    with ui_client(stack.url, monkeypatch, stack.tokens["editor"]) as editor:
        for fmt in FORMATS:
            got = editor.get(href("jobs", job_id, fmt))
            assert got.status_code == 200, got.text
            want = stack.direct(f"/jobs/{job_id}/result/export", "editor", fmt)
            assert (
                got.headers["content-disposition"]
                == want.headers["content-disposition"]
            )
            if fmt != "xlsx":
                assert got.content == want.content
        assert b"amount" in editor.get(href("jobs", job_id)).content
    # The job is the editor's own: not there for the viewer (the api's 404).
    with ui_client(stack.url, monkeypatch, stack.tokens["viewer"]) as viewer:
        assert_error(viewer.get(href("jobs", job_id)), 404, "not_found")


def test_format_defaults_to_csv(ui: TestClient, stack: Stack) -> None:
    dataset_id = stack.add_dataset()
    got = ui.get(f"/_ballast/exports/datasets/{dataset_id}")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")


def test_without_the_cookie_it_is_401(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id = stack.add_dataset()
    with ui_client(stack.url, monkeypatch) as anonymous:
        assert_error(
            anonymous.get(href("datasets", dataset_id)), 401, "unauthenticated"
        )
    # A cookie the api does not know (signed out, expired): its 401.
    with ui_client(stack.url, monkeypatch, "not-a-session") as stale:
        assert_error(stale.get(href("datasets", dataset_id)), 401, "unauthenticated")


def test_only_known_kinds_ids_and_formats(ui: TestClient, stack: Stack) -> None:
    dataset_id = stack.add_dataset()
    body = assert_error(ui.get(href("projects", dataset_id)), 404, "not_found")
    assert "datasets or jobs" in body["message"]
    body = assert_error(ui.get(href("datasets", "not-a-uuid")), 404, "not_found")
    assert "not a UUID" in body["message"]
    assert_error(ui.get(href("datasets", "1234")), 404, "not_found")
    for fmt in ("exe", "CSV", "", "csv,xlsx"):
        body = assert_error(
            ui.get(href("datasets", dataset_id, fmt)), 422, "validation_error"
        )
        assert "csv, xlsx or parquet" in body["message"]
    repeated = ui.get(f"/_ballast/exports/datasets/{dataset_id}?format=csv&format=exe")
    assert_error(repeated, 422, "validation_error")
    assert ui.post(href("datasets", dataset_id)).status_code == 405


def test_the_apis_refusals_come_through(
    ui: TestClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_error(ui.get(href("datasets", uuid.uuid4())), 404, "not_found")
    # Someone else's dataset (in no project) is not there for the viewer.
    theirs = stack.add_dataset(owner="editor")
    body = assert_error(ui.get(href("datasets", theirs)), 404, "not_found")
    assert "trace_id" in body["details"]
    pending = stack.add_dataset(status="IMPORTING")
    body = assert_error(ui.get(href("datasets", pending)), 409, "dataset_not_ready")
    assert body["details"]["status"] == "IMPORTING"
    # A user whose roles give no datasets:read: the api's 403.
    with ui_client(stack.url, monkeypatch, stack.session_of("nobody")) as nobody:
        assert_error(nobody.get(href("datasets", theirs)), 403, "forbidden")


def test_an_api_away_is_503_with_retry_after(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id = stack.add_dataset()
    gone = f"http://{LOOPBACK}:{free_port()}"
    with ui_client(gone, monkeypatch, stack.tokens["viewer"]) as client:
        resp = client.get(href("datasets", dataset_id))
    assert_error(resp, 503, "unavailable")
    assert int(resp.headers["retry-after"]) >= 1


# --------------------------------------------------------------------------- a scripted api

# The scripted api's dataset ids: what each one does.
HELD = uuid.UUID("00000000-0000-0000-0000-00000000a001")  # first chunk, waits, rest
LEFT = uuid.UUID("00000000-0000-0000-0000-00000000a002")  # first chunk, watches EOF
BROKEN = uuid.UUID("00000000-0000-0000-0000-00000000a003")  # 500
BUSY = uuid.UUID("00000000-0000-0000-0000-00000000a004")  # 503, Retry-After: 7
INLINE = uuid.UUID("00000000-0000-0000-0000-00000000a005")  # a file meant inline
FIRST = b"region,amount\r\n" + b"north,1.5\r\n" * 1000
REST = b"south,2.5\r\n" * 50_000


class Scripted(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, free_port()), _ScriptedHandler)
        self.release = threading.Event()
        self.client_left = threading.Event()
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: the body ends when the connection closes (no length, no chunks).
    protocol_version = "HTTP/1.0"
    server: Scripted

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        match = re.fullmatch(r"/v1/datasets/([0-9a-f-]+)/export\?format=csv", self.path)
        which = uuid.UUID(match.group(1)) if match else None
        if which in (BROKEN, BUSY):
            body = b'{"code": "internal_error", "message": "boom", "details": {}}'
            self.send_response(500 if which == BROKEN else 503)
            self.send_header("Content-Type", "application/json")
            if which == BUSY:
                self.send_header("Retry-After", "7")
            self.end_headers()
            self.wfile.write(body)
            return
        if which == INLINE:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Disposition", "inline")
            self.end_headers()
            self.wfile.write(b"<script>alert(1)</script>")
            return
        if which not in (HELD, LEFT):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Disposition", 'attachment; filename="held.csv"')
        self.end_headers()
        self.wfile.write(FIRST)
        self.wfile.flush()
        if which == HELD:
            if self.server.release.wait(20):
                self.wfile.write(REST)
            return
        # LEFT: the ui closes this connection when its browser goes away.
        self.connection.settimeout(20)
        with contextlib.suppress(OSError):
            if self.connection.recv(1) == b"":
                self.server.client_left.set()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    api = Scripted()
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.release.set()
        api.shutdown()
        api.server_close()
        thread.join(10)


def test_the_file_is_streamed_not_buffered(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first bytes reach the browser while the api still holds the rest back: a
    route that read the whole file first would wait here until the api gave up."""
    with ui_client(scripted.url, monkeypatch, "token-1") as client:
        with client.stream("GET", href("datasets", HELD)) as resp:
            assert resp.status_code == 200
            assert (
                resp.headers["content-disposition"] == 'attachment; filename="held.csv"'
            )
            assert resp.headers["x-content-type-options"] == "nosniff"
            assert "content-length" not in resp.headers
            chunks = resp.iter_bytes()
            got = b""
            while len(got) < len(FIRST):
                got += next(chunks)
            assert not scripted.release.is_set()
            assert got == FIRST
            scripted.release.set()
            got += b"".join(chunks)
        assert got == FIRST + REST
    # The api was asked with the cookie's session, for the dataset and format asked.
    assert scripted.requests == [
        (f"/v1/datasets/{HELD}/export?format=csv", "Bearer token-1")
    ]


def test_a_browser_going_away_closes_the_apis_response(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ui_client(scripted.url, monkeypatch, "token-1") as client:
        with client.stream("GET", href("datasets", LEFT)) as resp:
            assert resp.status_code == 200
            next(resp.iter_bytes())
        # The download was cancelled halfway (the browser left).
        assert scripted.client_left.wait(10), "the api's response was left open"


@pytest.mark.parametrize(("which", "retry_after"), [(BROKEN, "1"), (BUSY, "7")])
def test_an_api_failing_is_503_with_retry_after(
    scripted: Scripted,
    monkeypatch: pytest.MonkeyPatch,
    which: uuid.UUID,
    retry_after: str,
) -> None:
    with ui_client(scripted.url, monkeypatch, "token-1") as client:
        resp = client.get(href("datasets", which))
    assert_error(resp, 503, "unavailable")
    assert resp.headers["retry-after"] == retry_after
    assert "boom" not in resp.text  # the api's internal message stays there


def test_a_file_is_always_an_attachment(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ui_client(scripted.url, monkeypatch, "token-1") as client:
        resp = client.get(href("datasets", INLINE))
    assert resp.status_code == 200
    assert resp.headers["content-disposition"] == (
        f'attachment; filename="dataset-{INLINE}.csv"'
    )
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_head_answers_the_headers_only(ui: TestClient, stack: Stack) -> None:
    dataset_id = stack.add_dataset()
    resp = ui.head(href("datasets", dataset_id, "parquet"))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.apache.parquet"
    assert resp.headers["content-disposition"].startswith("attachment;")
    assert resp.content == b""


def test_served_under_the_base_path_too(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "base_path", lambda: "/ballast")
    scripted.release.set()
    with ui_client(scripted.url, monkeypatch, "token-1") as client:
        assert client.get("/ballast" + href("datasets", HELD)).status_code == 200
        assert client.get(href("datasets", HELD)).status_code == 200
        assert_error(client.get("/other" + href("datasets", HELD)), 404, "not_found")


# --------------------------------------------------------------------------- the links


def test_export_href_is_the_route_under_the_base_path() -> None:
    item = uuid.uuid4()
    assert (
        downloads.export_href(f"/datasets/{item}/export", "xlsx")
        == f"/_ballast/exports/datasets/{item}?format=xlsx"
    )
    assert (
        downloads.export_href(f"/jobs/{item}/result/export", "parquet")
        == f"/_ballast/exports/jobs/{item}?format=parquet"
    )
    before = st_config.get_option("server.baseUrlPath")
    try:
        for configured in ("ballast", "/ballast/", "ballast/"):
            st_config.set_option("server.baseUrlPath", configured)
            assert downloads.export_href(f"/datasets/{item}/export", "csv") == (
                f"/ballast/_ballast/exports/datasets/{item}?format=csv"
            )
        st_config.set_option("server.baseUrlPath", "/")
        assert downloads.export_href(f"/jobs/{item}/result/export", "csv") == (
            f"/_ballast/exports/jobs/{item}?format=csv"
        )
    finally:
        st_config.set_option("server.baseUrlPath", before)
    with pytest.raises(ValueError, match="no export route"):
        downloads.export_href("/projects/x/export", "csv")


def _links_app() -> None:
    import streamlit as st

    from ballast_ui.downloads import download_buttons

    download_buttons(
        None,  # type: ignore[arg-type]  # the links need no api
        st.session_state["path"],
        st.session_state["name"],
        key="t::download",
    )


def test_download_links_one_per_format_escaped() -> None:
    item = uuid.uuid4()
    at = AppTest.from_function(_links_app, default_timeout=30)
    at.session_state["path"] = f"/datasets/{item}/export"
    name = 'Q3 "x" <script>alert(1)</script> & co'
    at.session_state["name"] = name
    at.run()
    assert not at.exception, at.exception
    assert [c.value for c in at.caption] == ["Download"]
    body = "\n".join(m.value for m in at.markdown)
    anchors = re.findall(r"<a\b[^>]*>[^<]*</a>", body)
    assert len(anchors) == 3
    assert "<script>" not in body
    assert "&lt;script&gt;" not in body  # the file name stem has no markup left
    for anchor, (label, fmt) in zip(
        anchors,
        [("CSV", "csv"), ("Excel", "xlsx"), ("Parquet", "parquet")],
        strict=True,
    ):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', anchor))
        assert html.unescape(attrs["href"]) == (
            f"/_ballast/exports/datasets/{item}?format={fmt}"
        )
        assert attrs["download"] == f"{downloads.file_stem(name)}.{fmt}"
        assert not re.search(r"[<>\"&]", attrs["download"])
        assert attrs["target"] == "_self"  # not a new tab
        assert anchor.endswith(f">{label}</a>")
    assert len(at.columns) == 3
