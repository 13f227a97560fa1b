"""/v1/schedules: recurring jobs through the api (validation, access, audit)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ballast_common.jobs import schedules
from ballast_common.models import utcnow
from tests.api.conftest import Api, new_id

GOOD: dict[str, Any] = {
    "name": "nightly-demo",
    "task": "demo.sleep",
    "kwargs": {"seconds": 0},
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
}


def _create(api: Api, user: str = "editor", **body: Any) -> Any:
    return api.client.post("/v1/schedules", json={**GOOD, **body}, headers=api.h(user))


def test_add_list_pause_resume_remove_audited(api: Api) -> None:
    r = _create(api, **{}, name="nightly")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["cron"] == "0 3 * * *"
    assert created["enabled"] is True
    assert created["next_run_at"] is not None
    sid = created["id"]

    listed = api.client.get("/v1/schedules", headers=api.h("editor")).json()
    assert [s["name"] for s in listed["items"]] == ["nightly"]
    # Admins see everyone's; others only their own (someone else's is a 404).
    assert api.client.get("/v1/schedules", headers=api.h("admin")).json()["total"] == 1
    assert api.client.get("/v1/schedules", headers=api.h("viewer")).json()["total"] == 0
    assert (
        api.client.get(f"/v1/schedules/{sid}", headers=api.h("viewer")).status_code
        == 404
    )

    paused = api.client.patch(
        f"/v1/schedules/{sid}",
        json={"enabled": False, "version": created["version"]},
        headers=api.h("editor"),
    )
    assert paused.status_code == 200, paused.text
    assert paused.json()["next_run_at"] is None
    stale = api.client.patch(
        f"/v1/schedules/{sid}",
        json={"enabled": True, "version": created["version"]},
        headers=api.h("editor"),
    )
    assert stale.status_code == 409
    resumed = api.client.patch(
        f"/v1/schedules/{sid}",
        json={"enabled": True, "cron": "*/10 * * * *", "timezone": "UTC"},
        headers=api.h("admin"),
    )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["next_run_at"] is not None
    assert resumed.json()["cron"] == "*/10 * * * *"

    # The scheduler's tick shows in the run history.
    schedules.run_due(api.db, None, now=utcnow() + timedelta(minutes=11))
    runs = api.client.get(f"/v1/schedules/{sid}/runs", headers=api.h("editor"))
    assert runs.status_code == 200
    assert len(runs.json()) == 1
    assert runs.json()[0]["job_id"] is not None

    assert (
        api.client.delete(f"/v1/schedules/{sid}", headers=api.h("viewer")).status_code
        == 403
    )
    assert (
        api.client.delete(f"/v1/schedules/{sid}", headers=api.h("editor")).status_code
        == 204
    )
    assert (
        api.client.get(f"/v1/schedules/{sid}", headers=api.h("editor")).status_code
        == 404
    )
    actions = [
        row[0]
        for row in api.sql(
            "SELECT action FROM audit_log WHERE resource_type = 'job_schedules' "
            "AND resource_id = :sid ORDER BY id",
            sid=sid,
        )
    ]
    assert actions == ["create", "update", "update", "delete"]


def test_viewer_may_not_add(api: Api) -> None:
    assert _create(api, "viewer").status_code == 403


def test_idempotent_add(api: Api) -> None:
    key = {"Idempotency-Key": new_id()}
    first = api.client.post("/v1/schedules", json=GOOD, headers=api.h("editor", **key))
    again = api.client.post("/v1/schedules", json=GOOD, headers=api.h("editor", **key))
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert _create(api).status_code == 409  # the name is taken


BAD: list[dict[str, Any]] = [
    {"cron": "not a cron"},
    {"cron": "* * * * * *"},
    {"cron": "0 0 30 2 *"},
    {"cron": "61 * * * *"},
    {"cron": "-5 * * * *"},
    {"cron": "0 3 * * *\u0000"},
    {"cron": "*" * 100_000},
    {"name": "x\u0000y"},
    {"name": "n" * 101},
    {"name": ""},
    {"timezone": "Mars/Base"},
    {"timezone": "../../etc/passwd"},
    {"timeout": -1},
    {"timeout": 10**30},
    {"kwargs": {"seconds": -3}},
    {"task": "no.such.task"},
    {"project_id": "not-a-uuid"},
    {"enabled": "maybe"},
]


def test_bad_input_is_422(api: Api) -> None:
    sid = _create(api, name="target").json()["id"]
    for bad in BAD:
        r = _create(api, **bad)
        assert r.status_code == 422, (bad, r.text)
        patch = {k: v for k, v in bad.items() if k in ("cron", "timezone", "timeout")}
        if patch:
            r = api.client.patch(
                f"/v1/schedules/{sid}", json=patch, headers=api.h("editor")
            )
            assert r.status_code == 422, (bad, r.text)
    assert api.client.get("/v1/schedules", headers=api.h("editor")).json()["total"] == 1
