from __future__ import annotations

from tests.api.conftest import Api


def test_admin_reads_the_audit_trail_with_filters(api: Api) -> None:
    p = api.client.post(
        "/v1/projects", json={"name": "Trail"}, headers=api.h("editor")
    ).json()
    api.client.patch(
        f"/v1/projects/{p['id']}", json={"priority": 4}, headers=api.h("editor")
    )
    resp = api.client.get(
        "/v1/audit",
        params={"resource_type": "projects", "resource_id": p["id"]},
        headers=api.h("admin"),
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["total"] == 2
    assert [i["action"] for i in body["items"]] == ["update", "create"]  # newest first
    assert body["items"][0]["new_values"]["priority"] == 4
    assert body["items"][0]["old_values"]["priority"] == 3
    only_updates = api.client.get(
        "/v1/audit",
        params={"action": "update", "resource_type": "projects"},
        headers=api.h("admin"),
    )
    assert only_updates.json()["total"] == 1
    future = api.client.get(
        "/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=api.h("admin")
    )
    assert future.json()["total"] == 0


def test_only_admins_read_the_audit_trail(api: Api) -> None:
    assert api.client.get("/v1/audit", headers=api.h("editor")).status_code == 403
    assert api.client.get("/v1/audit", headers=api.h("viewer")).status_code == 403


def test_track_stores_masked_events(api: Api) -> None:
    resp = api.client.post(
        "/v1/events",
        json={
            "events": [
                {
                    "event": "page.view",
                    "props": {
                        "page": "projects",
                        "email": "jane.doe@example.com",
                        "password": "hunter2",
                    },
                }
            ]
        },
        headers=api.h("viewer"),
    )
    assert resp.status_code == 202
    assert resp.json() == {"accepted": 1}
    row = api.sql("SELECT name, props FROM events")[0]
    assert row[0] == "page.view"
    assert "jane.doe@example.com" not in str(row[1])
    assert "hunter2" not in str(row[1])
    assert "projects" in str(row[1])
    bad = api.client.post(
        "/v1/events", json={"events": [{"event": "Bad Name!"}]}, headers=api.h("viewer")
    )
    assert bad.status_code == 422
    assert bad.json()["details"]["fields"] == ["events.0.event"]
