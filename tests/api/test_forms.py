from __future__ import annotations

from tests.api.conftest import Api, new_id


def save(api: Api, form_id: str, body: dict[str, object], user: str = "editor", write_id: str | None = None):  # type: ignore[no-untyped-def]
    headers = api.h(user, **({"Idempotency-Key": write_id} if write_id else {}))
    return api.client.put(f"/v1/forms/{form_id}", json=body, headers=headers)


def test_create_then_update_bumps_version(api: Api) -> None:
    created = save(api, "settings.team", {"data": {"a": 1}, "expected_version": 0})
    assert created.status_code == 201
    assert created.json()["version"] == 1
    updated = save(api, "settings.team", {"data": {"a": 2}, "expected_version": 1})
    assert updated.status_code == 200
    assert updated.json()["version"] == 2
    assert updated.json()["overwrote"] is None
    loaded = api.client.get("/v1/forms/settings.team", headers=api.h("viewer"))
    assert loaded.json()["data"] == {"a": 2}
    rows = api.sql(
        "SELECT action, old_values, new_values FROM audit_log WHERE resource_type='forms' ORDER BY id"
    )
    assert [r[0] for r in rows] == ["create", "update"]


def test_stale_version_gets_409_with_both_versions(api: Api) -> None:
    save(api, "f1", {"data": {"name": "base"}, "expected_version": 0})
    save(api, "f1", {"data": {"name": "theirs"}, "expected_version": 1}, user="admin")
    resp = save(api, "f1", {"data": {"name": "mine"}, "expected_version": 1})
    assert resp.status_code == 409
    body = resp.json()
    assert body["code"] == "conflict"
    assert body["details"]["current"]["version"] == 2
    assert body["details"]["current"]["data"] == {"name": "theirs"}
    assert body["details"]["attempted"]["data"] == {"name": "mine"}
    assert body["details"]["attempted"]["version"] == 1
    assert api.client.get("/v1/forms/f1", headers=api.h("editor")).json()["data"] == {
        "name": "theirs"
    }


def test_force_is_last_write_wins_and_reports_what_it_overwrote(api: Api) -> None:
    save(api, "f2", {"data": {"n": 1}})
    save(api, "f2", {"data": {"n": 2}}, user="admin")
    resp = save(api, "f2", {"data": {"n": 3}, "expected_version": 1, "force": True})
    assert resp.status_code == 200
    assert resp.json()["version"] == 3
    assert resp.json()["overwrote"]["current_version"] == 2


def test_without_expected_version_last_write_wins(api: Api) -> None:
    save(api, "f3", {"data": {"n": 1}})
    resp = save(api, "f3", {"data": {"n": 2}})
    assert resp.status_code == 200
    assert resp.json()["version"] == 2


def test_save_is_idempotent(api: Api) -> None:
    wid = new_id()
    first = save(api, "f4", {"data": {"n": 1}}, write_id=wid)
    second = save(api, "f4", {"data": {"n": 1}}, write_id=wid)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert api.audit_count(resource_type="forms") == 1


def test_save_clears_my_drafts_of_that_form(api: Api) -> None:
    api.client.put(
        "/v1/drafts",
        json={"items": [{"form_id": "f5", "field": "n", "value": 1, "seq": 1}]},
        headers=api.h("editor"),
    )
    save(api, "f5", {"data": {"n": 1}})
    assert (
        api.client.get(
            "/v1/drafts", params={"form_id": "f5"}, headers=api.h("editor")
        ).json()
        == []
    )


def test_viewer_cannot_save(api: Api) -> None:
    resp = save(api, "f6", {"data": {}}, user="viewer")
    assert resp.status_code == 403
    assert resp.json()["code"] == "forbidden"
    assert resp.json()["details"]["permission"] == "forms:write"


def test_unknown_form_is_404_and_new_form_with_version_is_409(api: Api) -> None:
    resp = api.client.get("/v1/forms/nope", headers=api.h("editor"))
    assert resp.status_code == 404
    assert resp.json()["code"] == "not_found"
    assert save(api, "nope", {"data": {}, "expected_version": 3}).status_code == 409


def test_bad_body_names_fields(api: Api) -> None:
    resp = save(api, "f7", {"data": "not a dict", "expected_version": -1})
    assert resp.status_code == 422
    assert set(resp.json()["details"]["fields"]) == {"data", "expected_version"}
