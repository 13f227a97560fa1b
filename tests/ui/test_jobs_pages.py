"""Jobs, Data and Analysis pages (AppTest) against an in-memory fake of the api.

The pages use the real `ApiClient` over an `httpx.MockTransport` whose handler keeps
jobs and datasets in `FAKE`; tests move jobs along by editing `FAKE` directly.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

ME = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
OTHER = uuid.UUID("00000000-0000-0000-0000-0000000000bb")
EDITOR = ("jobs:read", "jobs:write", "datasets:read", "datasets:write")


class FakeApi:
    """Just enough of the jobs and datasets endpoints."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.uploads: list[tuple[str, bytes, dict[str, str]]] = []
        self.calls: list[str] = []
        self.max_upload = 1000
        self.schedules: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ data

    def job(self, name: str = "demo.sleep", **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC) + timedelta(seconds=len(self.jobs))
        job: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": name,
            "args": [],
            "kwargs": {},
            "queue": "default",
            "priority": 5,
            "scheduled_at": None,
            "timeout": 60,
            "retry_delay": 1.0,
            "depends_on": [],
            "tags": [],
            "created_by": str(ME),
            "status": "PENDING",
            "progress": 0.0,
            "progress_message": "",
            "result_ref": None,
            "error_code": None,
            "error_message": None,
            "error_action": None,
            "trace_id": None,
            "attempts": 0,
            "retry_count": 0,
            "max_retries": 3,
            "cancel_requested": False,
            "started_at": None,
            "completed_at": None,
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "result": None,
        }
        job.update(fields)
        self.jobs[job["id"]] = job
        return job

    def finish(
        self, job: dict[str, Any], status: str = "COMPLETED", **more: Any
    ) -> None:
        job.update(
            status=status,
            progress=1.0 if status == "COMPLETED" else job["progress"],
            completed_at=(datetime.now(UTC) + timedelta(seconds=5)).isoformat(),
            **more,
        )

    def dataset(self, **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        ds: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "project_id": None,
            "name": "sales",
            "format": "csv",
            "filename": "sales.csv",
            "status": "READY",
            "size_bytes": 42,
            "sha256": "0" * 64,
            "row_count": 3,
            "columns": [
                {"name": "region", "dtype": "object"},
                {"name": "amount", "dtype": "float64"},
                {"name": "units", "dtype": "int64"},
            ],
            "error_code": None,
            "error_message": None,
            "job_id": None,
            "created_by": str(ME),
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "preview": [
                {"region": "north", "amount": 1.5, "units": 3},
                {"region": "south", "amount": 2.5, "units": 4},
            ],
        }
        ds.update(fields)
        self.datasets[ds["id"]] = ds
        return ds

    # ------------------------------------------------------------------ http

    @staticmethod
    def _page(items: Sequence[dict[str, Any]], size: int) -> dict[str, Any]:
        return {
            "items": list(items)[:size],
            "total": len(items),
            "page": 1,
            "size": size,
            "pages": 1,
        }

    @staticmethod
    def _view(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k != "result"}

    @staticmethod
    def _error(status: int, message: str) -> httpx.Response:
        return httpx.Response(
            status,
            json={"code": "x", "message": message, "details": {}, "trace_id": "t-1"},
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        q = request.url.params
        self.calls.append(f"{request.method} {path}")
        size = int(q.get("size", "25"))
        if request.method == "GET" and path == "/jobs":
            items = sorted(self.jobs.values(), key=lambda j: j["created_at"])[::-1]
            if q.get_list("status"):
                items = [j for j in items if j["status"] in q.get_list("status")]
            if q.get("mine") == "true":
                items = [j for j in items if j["created_by"] == str(ME)]
            if q.get("finished_since"):
                since = datetime.fromisoformat(q["finished_since"])
                items = [
                    j
                    for j in items
                    if j["completed_at"]
                    and datetime.fromisoformat(j["completed_at"]) > since
                ]
            return httpx.Response(
                200, json=self._page([self._view(j) for j in items], size)
            )
        if request.method == "POST" and path == "/jobs":
            body = json.loads(request.content)
            job = self.job(body["name"], kwargs=body["kwargs"], tags=body["tags"])
            return httpx.Response(201, json=self._view(job))
        m = re.fullmatch(r"/jobs/([^/]+)(/result|/cancel|/retry)?", path)
        if m and m[1] in self.jobs:
            job = self.jobs[m[1]]
            if m[2] == "/result":
                return httpx.Response(200, json={"job_id": m[1], "data": job["result"]})
            if m[2] == "/cancel":
                if job["status"] == "PENDING":
                    job["status"] = "CANCELLED"
                else:
                    job["cancel_requested"] = True
                return httpx.Response(202, json=self._view(job))
            if m[2] == "/retry":
                if job["status"] not in ("FAILED", "CANCELLED"):
                    return self._error(409, "only failed or cancelled jobs")
                job.update(status="PENDING", error_message=None, progress=0.0)
                return httpx.Response(202, json=self._view(job))
            return httpx.Response(200, json=self._view(job))
        if request.method == "POST" and path == "/datasets":
            data = request.read()
            filename = request.headers.get("X-Filename", "")
            self.uploads.append((filename, data, dict(q)))
            if len(data) > self.max_upload:
                return self._error(413, "The file is larger than 0.001 MB.")
            job = self.job("datasets.import")
            ds = self.dataset(
                name=q["name"],
                filename=filename,
                status="PENDING",
                row_count=None,
                columns=[],
                preview=[],
                job_id=job["id"],
            )
            job["kwargs"] = {"dataset_id": ds["id"]}
            return httpx.Response(202, json={"dataset": ds, "job": self._view(job)})
        if request.method == "GET" and path == "/datasets":
            items = list(self.datasets.values())
            if q.get_list("status"):
                items = [d for d in items if d["status"] in q.get_list("status")]
            return httpx.Response(200, json=self._page(items, size))
        m = re.fullmatch(r"/datasets/([^/]+)", path)
        if m and m[1] in self.datasets:
            return httpx.Response(200, json=self.datasets[m[1]])
        if path == "/projects":
            return httpx.Response(200, json=self._page([], size))
        if path.startswith("/schedules"):
            return self._schedules(request, path, size)
        return self._error(404, f"no route {path}")

    def _schedules(
        self, request: httpx.Request, path: str, size: int
    ) -> httpx.Response:
        if request.method == "GET" and path == "/schedules":
            return httpx.Response(
                200, json=self._page(list(self.schedules.values()), size)
            )
        if request.method == "POST":
            body = json.loads(request.content)
            if len(body["cron"].split()) != 5:
                return self._error(422, f"{body['cron']!r} is not a cron expression")
            now = datetime.now(UTC).isoformat()
            row = {
                **body,
                "id": str(uuid.uuid4()),
                "enabled": True,
                "next_run_at": now,
                "last_run_at": None,
                "last_job_id": None,
                "last_error": None,
                "timeout": None,
                "project_id": None,
                "created_by": str(ME),
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            self.schedules[row["id"]] = row
            return httpx.Response(201, json=row)
        row = self.schedules.get(path.rsplit("/", 1)[-1])
        if row is None:
            return self._error(404, "schedule not found")
        if request.method == "PATCH":
            row["enabled"] = json.loads(request.content)["enabled"]
            row["next_run_at"] = row["created_at"] if row["enabled"] else None
            return httpx.Response(200, json=row)
        del self.schedules[row["id"]]
        return httpx.Response(204)


FAKE = FakeApi()


def install(permissions: Sequence[str]) -> Any:
    """A logged-in session context talking to `FAKE` (inside AppTest scripts)."""
    from tests.ui.fakes import install_ctx

    return install_ctx(permissions, handler=FAKE, user_id=ME, roles=["editor"])


def page_app() -> None:
    import streamlit as st

    from ballast_ui.pages.jobs import job_toasts
    from tests.ui.fakes import render_current_page
    from tests.ui.test_jobs_pages import EDITOR, install

    ctx = install(st.session_state.get("perms", EDITOR))
    render_current_page(ctx)
    job_toasts()


@pytest.fixture(autouse=True)
def fake() -> FakeApi:
    FAKE.__init__()  # type: ignore[misc]
    return FAKE


def open_page(page: str, perms: Sequence[str] = EDITOR, **params: str) -> AppTest:
    at = AppTest.from_function(page_app, default_timeout=60)
    at.session_state["perms"] = list(perms)
    at.query_params["page"] = page
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, key: str) -> Any:
    return at.button(key=key)


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def export_links(at: AppTest) -> list[tuple[str, str]]:
    """(href, label) of the page's download links."""
    return re.findall(
        r'<a href="([^"]+)" download="[^"]+"[^>]*>([^<]+)</a>', markdown(at)
    )


# --------------------------------------------------------------------------- guards


def test_pages_need_their_read_permissions() -> None:
    at = open_page("home", perms=["projects:read"])
    nav = at.text[0].value
    assert "jobs" not in nav
    assert "data" not in nav
    assert "analysis" not in nav
    at = open_page("jobs", perms=["projects:read"])
    assert at.text[1].value == "denied"
    at = open_page("home", perms=["jobs:read"])
    assert "jobs" in at.text[0].value
    assert "analysis" in at.text[0].value
    assert "data" not in at.text[0].value.split("=")[1].split(",")


def test_readers_cannot_act(fake: FakeApi) -> None:
    failed = fake.job(status="FAILED", error_message="boom")
    running = fake.job(status="RUNNING", progress=0.5)
    at = open_page("jobs", perms=["jobs:read"])
    assert button(at, f"jobs::retry::{failed['id']}").disabled
    assert button(at, f"jobs::cancel::{running['id']}").disabled
    at = open_page("data", perms=["datasets:read"])
    assert button(at, "data::import").disabled


def test_the_jobs_can_list_decides_the_actions(fake: FakeApi) -> None:
    """Another user's job of a project I edit may be cancelled (the api says `write`);
    my own job of a project I may now only read may not."""
    theirs = fake.job(
        status="RUNNING", created_by=str(uuid.uuid4()), can=["read", "write"]
    )
    mine = fake.job(status="FAILED", can=["read"])
    at = open_page("jobs")
    assert not button(at, f"jobs::cancel::{theirs['id']}").disabled
    assert button(at, f"jobs::retry::{mine['id']}").disabled
    assert button(at, f"jobs::cancel::{mine['id']}").disabled


# --------------------------------------------------------------------------- jobs


def test_jobs_list_shows_status_progress_and_errors(fake: FakeApi) -> None:
    fake.job(status="RUNNING", progress=0.4, progress_message="step 4 of 10")
    fake.job(
        status="FAILED",
        error_code="bad_file",
        error_message="row 3 is not valid UTF-8",
        error_action="Fix the file (see the message) and upload it again.",
        trace_id="abc123",
    )
    at = open_page("jobs")
    bars = [getattr(p, "value", None) for p in at.get("progress")]
    assert 40 in bars or 0.4 in bars
    text = markdown(at) + "\n".join(c.value for c in at.caption)
    assert "running" in text
    assert "failed" in text
    assert "row 3 is not valid UTF-8" in text
    assert "Fix the file" in text
    assert "abc123" in text
    # Fixed geometry: always the same number of rows.
    assert sum(1 for b in at.button if b.key and b.key.startswith("jobs::open::")) == 2


def test_cancel_and_retry(fake: FakeApi) -> None:
    running = fake.job(status="RUNNING", progress=0.2)
    failed = fake.job(status="FAILED", error_message="boom")
    at = open_page("jobs")
    assert not button(at, f"jobs::cancel::{running['id']}").disabled
    assert button(at, f"jobs::retry::{running['id']}").disabled
    button(at, f"jobs::cancel::{running['id']}").click().run()
    assert running["cancel_requested"]
    assert at.info[0].value == "Cancel requested."
    assert button(at, f"jobs::cancel::{running['id']}").disabled
    button(at, f"jobs::retry::{failed['id']}").click().run()
    assert failed["status"] == "PENDING"
    assert "Started again." in at.info[0].value


def test_details_show_the_result(fake: FakeApi) -> None:
    done = fake.job(status="COMPLETED", progress=1.0, result={"slept": 1.0})
    at = open_page("jobs")
    button(at, f"jobs::open::{done['id']}").click().run()
    assert at.query_params["id"] == [done["id"]] or at.query_params["id"] == done["id"]
    assert any('"slept": 1.0' in c.value for c in at.code)


def test_toast_when_my_job_finishes(fake: FakeApi) -> None:
    job = fake.job(status="RUNNING")
    at = open_page("home")
    assert not at.toast
    fake.finish(job)
    at.run()
    assert [t.value for t in at.toast] == ["Job demo.sleep completed"]
    at.run()
    assert not at.toast  # told once


# --------------------------------------------------------------------------- data


def _keep_file(at: AppTest, name: str, data: bytes) -> None:
    store = dict(at.session_state["_ballast_values"])
    store["data-import.file"] = {
        "name": name,
        "size": len(data),
        "type": "text/csv",
        "sha256": "",
        "content_b64": base64.b64encode(data).decode(),
    }
    at.session_state["_ballast_values"] = store


def test_upload_import_progress_and_preview(fake: FakeApi) -> None:
    at = open_page("data")
    _keep_file(at, "sales.csv", b"region,amount\nnorth,1.5\n")
    button(at, "data::import").click().run()
    assert not at.exception
    filename, data, query = fake.uploads[0]
    assert (filename, data, query["name"]) == (
        "sales.csv",
        b"region,amount\nnorth,1.5\n",
        "sales",
    )
    ds = next(iter(fake.datasets.values()))
    assert at.query_params["id"] in (ds["id"], [ds["id"]])
    assert "Importing sales.csv" in at.info[0].value
    job = fake.jobs[ds["job_id"]]
    job.update(status="RUNNING", progress=0.5, progress_message="parsing")
    at.run()
    assert any("parsing" in str(p.proto.text) for p in at.get("progress"))
    ds.update(
        status="READY",
        row_count=1,
        columns=[{"name": "region", "dtype": "object"}],
        preview=[{"region": "north"}],
    )
    fake.finish(job)
    at.run()
    frames = at.dataframe
    assert any(list(f.value.columns) == ["region"] for f in frames)
    # A ready dataset offers its exports: links to the ui's export route.
    assert export_links(at) == [
        (f"/_ballast/exports/datasets/{ds['id']}?format={fmt}", label)
        for label, fmt in (("CSV", "csv"), ("Excel", "xlsx"), ("Parquet", "parquet"))
    ]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"hello", "not a supported file"),
        ("empty.csv", b"", "is empty"),
        ("big.csv", b"x" * 2000, "larger than"),
    ],
)
def test_bad_files_are_refused_clearly(
    fake: FakeApi, name: str, data: bytes, message: str
) -> None:
    at = open_page("data")
    _keep_file(at, name, data)
    button(at, "data::import").click().run()
    assert message in at.error[0].value
    assert not fake.datasets


def test_failed_import_shows_why(fake: FakeApi) -> None:
    job = fake.job("datasets.import", status="FAILED", error_message="not UTF-8")
    ds = fake.dataset(
        status="FAILED", error_message="row 2: not UTF-8", job_id=job["id"], preview=[]
    )
    at = open_page("data", id=ds["id"])
    assert any("row 2: not UTF-8" in e.value for e in at.error)


# --------------------------------------------------------------------------- analysis


RESULT = {
    "dataset_id": "x",
    "mode": "accurate",
    "columns": {
        "amount": {
            "statistic": "mean",
            "estimate": 2.0,
            "low": 1.5,
            "high": 2.5,
            "confidence": 0.95,
            "n": 2,
            "n_resamples": 10000,
            "hist_edges": [1.5, 2.0, 2.5],
            "hist_counts": [4, 6],
        }
    },
}


def test_analysis_runs_a_bootstrap_job_and_charts_it(fake: FakeApi) -> None:
    ds = fake.dataset()
    at = open_page("analysis")
    at.selectbox(key="analysis.dataset").set_value(ds["id"]).run()
    assert at.multiselect(key="analysis.columns").options == ["amount", "units"]
    at.multiselect(key="analysis.columns").set_value(["amount"]).run()
    at.selectbox(key="analysis.mode").set_value("accurate").run()
    button(at, "analysis::run").click().run()
    assert not at.exception
    job = next(j for j in fake.jobs.values() if j["name"] == "analysis.bootstrap")
    assert job["kwargs"]["columns"] == ["amount"]
    assert job["kwargs"]["mode"] == "accurate"
    assert job["kwargs"]["dataset_id"] == ds["id"]
    job.update(status="RUNNING", progress=0.3)
    at.run()
    assert not button(at, f"analysis::job::cancel::{job['id']}").disabled
    button(at, f"analysis::job::cancel::{job['id']}").click().run()
    assert job["cancel_requested"]
    fake.finish(job, result=RESULT)
    at.run()
    assert not at.exception
    assert any(s.value.startswith("Result") for s in at.subheader)
    assert list(at.dataframe[-1].value["estimate"]) == [2.0]
    assert len(at.get("vega_lite_chart")) == 2  # intervals + distribution
    assert export_links(at) == [
        (f"/_ballast/exports/jobs/{job['id']}?format={fmt}", label)
        for label, fmt in (("CSV", "csv"), ("Excel", "xlsx"), ("Parquet", "parquet"))
    ]


def test_recurring_jobs_add_pause_resume_remove(fake: FakeApi) -> None:
    at = open_page("jobs")
    at.text_input(key="jobs::schedule::name").set_value("nightly")
    at.text_input(key="jobs::schedule::cron").set_value("* * *")
    at.button[-1].click().run()
    assert not at.exception
    assert any("not a cron expression" in e.value for e in at.error)
    assert not fake.schedules
    at.text_input(key="jobs::schedule::cron").set_value("0 3 * * *")
    at.text_input(key="jobs::schedule::tz").set_value("Europe/Berlin")
    at.button[-1].click().run()
    assert not at.exception
    (row,) = fake.schedules.values()
    assert (row["name"], row["cron"], row["timezone"]) == (
        "nightly",
        "0 3 * * *",
        "Europe/Berlin",
    )
    frame = at.dataframe[-1].value
    assert list(frame["state"]) == ["active"]
    button(at, "jobs::schedule::toggle").click().run()
    assert row["enabled"] is False
    assert list(at.dataframe[-1].value["state"]) == ["paused"]
    button(at, "jobs::schedule::toggle").click().run()
    assert row["enabled"] is True
    button(at, "jobs::schedule::remove").click().run()
    assert not fake.schedules
    assert not at.exception


def test_readers_see_schedules_without_controls(fake: FakeApi) -> None:
    editor = open_page("jobs")
    editor.text_input(key="jobs::schedule::name").set_value("hourly")
    editor.text_input(key="jobs::schedule::cron").set_value("0 * * * *")
    editor.button[-1].click().run()
    assert len(fake.schedules) == 1
    at = open_page("jobs", perms=("jobs:read",))
    assert not at.exception
    assert list(at.dataframe[-1].value["name"]) == ["hourly"]
    assert not [b for b in at.button if str(b.key).startswith("jobs::schedule")]
