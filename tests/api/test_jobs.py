"""Jobs API over SQLite and PostgreSQL: the row commits before the message, owner/admin
visibility, cancel/retry, filters. Messages go to the real embedded broker (kombu's
filesystem transport under the test's data dir), read back from its folder."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from ballast_common.db import run_tx
from ballast_common.jobs import TASKS, JobCreate, enqueue
from ballast_common.models import Job, JobResult
from tests.api.conftest import Api


def set_status(api: Api, job_id: str, status: str) -> None:
    with api.db.engine.begin() as conn:
        conn.execute(
            update(Job).where(Job.id == uuid.UUID(job_id)).values(status=status)
        )


def job_count(api: Api) -> int:
    with api.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Job)).scalar_one())


def sent(api: Api) -> list[dict[str, Any]]:
    """Messages waiting in the embedded broker: task name, job id, queue."""
    folder = Path(api.config.paths.data_dir) / "broker" / "queue"
    out = []
    for path in sorted(folder.glob("*.msg")) if folder.is_dir() else []:
        msg = json.loads(path.read_text())
        out.append(
            {
                "task": msg["headers"]["task"],
                "job_id": json.loads(msg["headers"]["argsrepr"].replace("'", '"'))[0],
                "queue": path.name.split(".")[-2],
            }
        )
    return out


def create(api: Api, user: str = "editor", **body: Any) -> Any:
    payload = {"name": "demo.sleep", "kwargs": {"seconds": 0.1}, **body}
    return api.client.post("/v1/jobs", json=payload, headers=api.h(user))


class TestEnqueue:
    def test_creates_pending_job_then_sends_message(self, api: Api) -> None:
        resp = create(api, tags=["nightly"], priority=7)
        assert resp.status_code == 201, resp.text
        job = resp.json()
        assert job["status"] == "PENDING"
        assert job["progress"] == 0
        assert job["queue"] == "default"
        assert job["kwargs"]["seconds"] == 0.1
        assert job["kwargs"]["steps"] == 10  # validated params, defaults filled in
        with api.db.session() as session:
            row = session.get(Job, uuid.UUID(job["id"]))
            assert row is not None
            assert row.status == "PENDING"
            assert row.dispatched_at is not None
        assert sent(api) == [
            {"task": "demo.sleep", "job_id": job["id"], "queue": "default"}
        ]
        assert api.audit_count(resource_type="jobs", action="create") == 1

    def test_timeout_is_bounded_by_the_workers_limit(self, api: Api) -> None:
        limit = api.config.jobs.soft_time_limit
        resp = create(api, timeout=limit + 1)
        assert resp.status_code == 422, resp.text
        err = resp.json()
        assert err["details"]["fields"] == ["timeout"]
        assert "jobs.soft_time_limit" in err["message"]
        assert job_count(api) == 0
        assert sent(api) == []
        ok = create(api, timeout=limit)
        assert ok.status_code == 201, ok.text
        assert ok.json()["timeout"] == limit

    def test_a_tasks_default_timeout_is_capped_to_the_workers_limit(
        self, api: Api
    ) -> None:
        request = JobCreate(name="demo.sleep", kwargs={"seconds": 0.1})
        job = run_tx(
            lambda uow: enqueue(
                uow, request, created_by=None, send=None, max_timeout=60
            ),
            db=api.db,
        )
        assert job.timeout == 60 < TASKS["demo.sleep"].default_timeout

    def test_routes_by_task(self, api: Api) -> None:
        dataset = api.client.post(
            "/v1/datasets",
            params={"name": "D", "format": "csv"},
            content=b"x\n1\n",
            headers=api.h("editor"),
        ).json()["dataset"]
        resp = create(
            api,
            name="analysis.bootstrap",
            kwargs={"dataset_id": dataset["id"], "columns": ["x"]},
        )
        assert resp.status_code == 201, resp.text
        assert [m["queue"] for m in sent(api)] == ["imports", "analysis"]
        # A dataset nobody can see (here: none at all) is not analysed.
        missing = create(
            api,
            name="analysis.bootstrap",
            kwargs={"dataset_id": str(uuid.uuid4()), "columns": ["x"]},
        )
        assert missing.status_code == 404

    def test_unknown_task_and_bad_params_are_refused_without_a_row(
        self, api: Api
    ) -> None:
        resp = create(api, name="nope.nothing")
        assert resp.status_code == 422
        assert "unknown job" in resp.json()["message"]
        resp = create(api, kwargs={"seconds": -1, "bogus": 1})
        assert resp.status_code == 422
        body = resp.json()
        fields = {e["field"] for e in body["details"]["errors"]}
        assert fields == {"seconds", "bogus"}
        assert job_count(api) == 0
        assert sent(api) == []

    def test_viewer_cannot_enqueue(self, api: Api) -> None:
        assert create(api, user="viewer").status_code == 403

    def test_idempotency_key_replays_one_job(self, api: Api) -> None:
        first = create(api, **{}).json()
        key = {"Idempotency-Key": uuid.uuid4().hex}
        a = api.client.post(
            "/v1/jobs",
            json={"name": "demo.sleep"},
            headers=api.h("editor", **key),
        )
        b = api.client.post(
            "/v1/jobs",
            json={"name": "demo.sleep"},
            headers=api.h("editor", **key),
        )
        assert a.status_code == b.status_code == 201
        assert a.json()["id"] == b.json()["id"] != first["id"]
        assert job_count(api) == 2
        assert len(sent(api)) == 2

    def test_scheduled_job_is_not_sent_before_it_is_due(self, api: Api) -> None:
        later = datetime.now(UTC) + timedelta(hours=1)
        resp = create(api, scheduled_at=later.isoformat())
        assert resp.status_code == 201, resp.text
        assert resp.json()["scheduled_at"] is not None
        assert sent(api) == []
        naive = create(api, scheduled_at="2030-01-01T00:00:00")
        assert naive.status_code == 422

    def test_dependent_job_waits_for_its_dependency(self, api: Api) -> None:
        first = create(api).json()
        second = create(api, depends_on=[first["id"]]).json()
        assert second["depends_on"] == [first["id"]]
        assert [m["job_id"] for m in sent(api)] == [first["id"]]
        unknown = create(api, depends_on=[str(uuid.uuid4())])
        assert unknown.status_code == 422
        assert "depends_on" in unknown.json()["details"]["fields"]


class TestVisibility:
    def test_owner_and_admin_see_a_job_others_do_not(self, api: Api) -> None:
        job = create(api).json()
        url = f"/v1/jobs/{job['id']}"
        assert api.client.get(url, headers=api.h("editor")).status_code == 200
        assert api.client.get(url, headers=api.h("admin")).status_code == 200
        hidden = api.client.get(url, headers=api.h("viewer"))
        assert hidden.status_code == 404
        assert (
            api.client.post(f"{url}/cancel", headers=api.h("viewer")).status_code == 403
        )

    def test_list_is_mine_for_users_and_all_for_admins(self, api: Api) -> None:
        create(api, user="editor")
        create(api, user="admin")
        editor = api.client.get("/v1/jobs", headers=api.h("editor")).json()
        admin = api.client.get("/v1/jobs", headers=api.h("admin")).json()
        admin_mine = api.client.get(
            "/v1/jobs", params={"mine": True}, headers=api.h("admin")
        ).json()
        viewer = api.client.get("/v1/jobs", headers=api.h("viewer")).json()
        assert (editor["total"], admin["total"], admin_mine["total"]) == (1, 2, 1)
        assert viewer["total"] == 0

    def test_filters(self, api: Api) -> None:
        a = create(api, tags=["x_1", "nightly"]).json()
        create(api, tags=["x1"])
        cancelled = create(api).json()
        api.client.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=api.h("editor"))

        def ids(**params: Any) -> list[str]:
            resp = api.client.get("/v1/jobs", params=params, headers=api.h("editor"))
            assert resp.status_code == 200, resp.text
            return [j["id"] for j in resp.json()["items"]]

        assert ids(tag="x_1") == [a["id"]]
        assert ids(status="CANCELLED") == [cancelled["id"]]
        assert len(ids(status=["PENDING", "CANCELLED"])) == 3
        assert len(ids(name="demo.sleep")) == 3
        assert ids(name="datasets.import") == []
        before = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        assert ids(finished_since=before) == [cancelled["id"]]
        summary = api.client.get("/v1/jobs/summary", headers=api.h("editor")).json()
        assert summary["PENDING"] == 2
        assert summary["CANCELLED"] == 1
        assert summary["FAILED"] == 0


class TestCancelRetry:
    def test_cancel_pending_then_retry(self, api: Api) -> None:
        job = create(api).json()
        url = f"/v1/jobs/{job['id']}"
        resp = api.client.post(f"{url}/cancel", headers=api.h("editor"))
        assert resp.status_code == 202
        assert resp.json()["status"] == "CANCELLED"
        assert resp.json()["completed_at"] is not None
        again = api.client.post(f"{url}/cancel", headers=api.h("editor"))
        assert again.status_code == 202
        retried = api.client.post(f"{url}/retry", headers=api.h("editor"))
        assert retried.status_code == 202
        body = retried.json()
        assert body["status"] == "PENDING"
        assert body["completed_at"] is None
        assert body["cancel_requested"] is False
        assert [m["job_id"] for m in sent(api)] == [job["id"], job["id"]]
        not_retryable = api.client.post(f"{url}/retry", headers=api.h("editor"))
        assert not_retryable.status_code == 409
        assert not_retryable.json()["code"] == "job_not_retryable"

    def test_cancel_and_retry_replay_per_idempotency_key(self, api: Api) -> None:
        job = create(api).json()
        url = f"/v1/jobs/{job['id']}"
        cancel_key = {**api.h("editor"), "Idempotency-Key": uuid.uuid4().hex}
        first = api.client.post(f"{url}/cancel", headers=cancel_key)
        assert first.json()["status"] == "CANCELLED"
        retry_key = {**api.h("editor"), "Idempotency-Key": uuid.uuid4().hex}
        retried = api.client.post(f"{url}/retry", headers=retry_key)
        assert (retried.status_code, retried.json()["status"]) == (202, "PENDING")
        # A repeated retry (say, after a timeout) answers the first outcome: no 409,
        # no second message.
        again = api.client.post(f"{url}/retry", headers=retry_key)
        assert (again.status_code, again.json()) == (202, retried.json())
        assert [m["job_id"] for m in sent(api)] == [job["id"], job["id"]]
        # The cancel's key replays the cancel's answer, not the job's current state.
        replay = api.client.post(f"{url}/cancel", headers=cancel_key)
        assert replay.json() == first.json()
        # A key belongs to one operation.
        misuse = api.client.post(f"{url}/cancel", headers=retry_key)
        assert misuse.status_code == 422

    def test_cancel_running_sets_the_cooperative_flag(self, api: Api) -> None:
        job = create(api).json()
        set_status(api, job["id"], "RUNNING")
        resp = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.h("admin"))
        assert resp.status_code == 202
        body = resp.json()
        assert body["status"] == "RUNNING"
        assert body["cancel_requested"] is True

    def test_finished_job_cannot_be_cancelled_and_has_a_result(self, api: Api) -> None:
        job = create(api).json()
        url = f"/v1/jobs/{job['id']}"
        missing = api.client.get(f"{url}/result", headers=api.h("editor"))
        assert missing.status_code == 404
        set_status(api, job["id"], "COMPLETED")
        with api.db.engine.begin() as conn:
            conn.execute(
                insert(JobResult).values(
                    job_id=uuid.UUID(job["id"]),
                    data={"answer": 42},
                    created_at=datetime.now(UTC),
                )
            )
        resp = api.client.post(f"{url}/cancel", headers=api.h("editor"))
        assert resp.status_code == 409
        assert resp.json()["code"] == "job_finished"
        result = api.client.get(f"{url}/result", headers=api.h("editor"))
        assert result.status_code == 200
        assert result.json()["data"] == {"answer": 42}

    def test_tasks_are_listed_with_their_parameters(self, api: Api) -> None:
        tasks = api.client.get("/v1/jobs/tasks", headers=api.h("viewer")).json()
        by_name = {t["name"]: t for t in tasks}
        assert set(by_name) >= {"demo.sleep", "datasets.import", "analysis.bootstrap"}
        assert "columns" in by_name["analysis.bootstrap"]["params_schema"]["properties"]
