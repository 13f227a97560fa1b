from __future__ import annotations

from tests.api.conftest import Api, new_id


def put(api: Api, user: str, items: list[dict[str, object]], write_id: str | None = None):  # type: ignore[no-untyped-def]
    headers = api.h(user, **({"Idempotency-Key": write_id} if write_id else {}))
    return api.client.put("/v1/drafts", json={"items": items}, headers=headers)


def test_upsert_and_fetch_every_json_type(api: Api) -> None:
    items = [
        {"form_id": "project.1", "field": "name", "value": "Alpha", "seq": 1},
        {"form_id": "project.1", "field": "budget", "value": 12.5, "seq": 1},
        {"form_id": "project.1", "field": "tags", "value": ["a", "b"], "seq": 1},
        {"form_id": "project.1", "field": "public", "value": True, "seq": 1},
        {"form_id": "project.1", "field": "start", "value": "2026-01-02", "seq": 1},
        {"form_id": "project.1", "field": "nothing", "value": None, "seq": 1},
        {
            "form_id": "project.1",
            "field": "table",
            "value": [{"x": 1}, {"x": 2}],
            "seq": 1,
        },
        {"form_id": "other", "field": "x", "value": 1, "seq": 1},
    ]
    resp = put(api, "editor", items, new_id())
    assert resp.status_code == 200, resp.text
    assert all(r["applied"] for r in resp.json()["items"])
    got = api.client.get(
        "/v1/drafts", params={"form_id": "project.1"}, headers=api.h("editor")
    )
    assert got.status_code == 200
    values = {d["field"]: d["value"] for d in got.json()}
    assert values == {
        i["field"]: i["value"] for i in items if i["form_id"] == "project.1"
    }
    assert len(api.client.get("/v1/drafts", headers=api.h("editor")).json()) == 8


def test_older_seq_never_overwrites_newer(api: Api) -> None:
    put(api, "editor", [{"form_id": "f", "field": "a", "value": "new", "seq": 5}])
    resp = put(
        api, "editor", [{"form_id": "f", "field": "a", "value": "old", "seq": 3}]
    )
    assert resp.json()["items"][0]["applied"] is False
    got = api.client.get(
        "/v1/drafts", params={"form_id": "f"}, headers=api.h("editor")
    ).json()
    assert got[0]["value"] == "new"
    assert got[0]["seq"] == 5


def test_batch_repeating_a_key_keeps_the_newest(api: Api) -> None:
    resp = put(
        api,
        "editor",
        [
            {"form_id": "f", "field": "a", "value": "2", "seq": 2},
            {"form_id": "f", "field": "a", "value": "1", "seq": 1},
        ],
    )
    assert len(resp.json()["items"]) == 1
    assert (
        api.client.get("/v1/drafts", headers=api.h("editor")).json()[0]["value"] == "2"
    )


def test_same_write_id_twice_has_one_effect(api: Api) -> None:
    wid = new_id()
    items = [{"form_id": "f", "field": "a", "value": "x", "seq": 1}]
    first = put(api, "editor", items, wid)
    audits = api.audit_count(resource_type="drafts")
    second = put(api, "editor", items, wid)
    assert first.json() == second.json()
    assert api.audit_count(resource_type="drafts") == audits == 1
    assert (
        api.sql("SELECT count(*) FROM write_ids WHERE write_id = :w", w=wid)[0][0] == 1
    )


def test_write_id_reused_for_other_data_is_refused(api: Api) -> None:
    wid = new_id()
    put(api, "editor", [{"form_id": "f", "field": "a", "value": "x", "seq": 1}], wid)
    resp = put(
        api, "editor", [{"form_id": "f", "field": "a", "value": "y", "seq": 2}], wid
    )
    assert resp.status_code == 422
    assert resp.json()["details"]["fields"] == ["write_id"]


def test_unchanged_value_writes_no_audit_row(api: Api) -> None:
    put(api, "editor", [{"form_id": "f", "field": "a", "value": "x", "seq": 1}])
    resp = put(api, "editor", [{"form_id": "f", "field": "a", "value": "x", "seq": 2}])
    assert resp.json()["items"][0]["applied"] is False
    assert api.audit_count(resource_type="drafts") == 1


def test_drafts_belong_to_their_user(api: Api) -> None:
    put(api, "editor", [{"form_id": "f", "field": "a", "value": "editor's", "seq": 1}])
    put(api, "admin", [{"form_id": "f", "field": "a", "value": "admin's", "seq": 1}])
    assert [
        d["value"] for d in api.client.get("/v1/drafts", headers=api.h("editor")).json()
    ] == ["editor's"]
    assert [
        d["value"] for d in api.client.get("/v1/drafts", headers=api.h("admin")).json()
    ] == ["admin's"]
    assert api.client.get("/v1/drafts", headers=api.h("viewer")).json() == []


def test_viewer_keeps_drafts_too(api: Api) -> None:
    # Drafts are personal: a viewer's typing (e.g. in Settings) is kept as well.
    resp = put(
        api,
        "viewer",
        [{"form_id": "settings", "field": "theme", "value": "dark", "seq": 1}],
    )
    assert resp.status_code == 200


def test_discard(api: Api) -> None:
    put(
        api,
        "editor",
        [
            {"form_id": "f", "field": "a", "value": 1, "seq": 1},
            {"form_id": "f", "field": "b", "value": 2, "seq": 1},
            {"form_id": "g", "field": "a", "value": 3, "seq": 1},
        ],
    )
    resp = api.client.delete(
        "/v1/drafts", params={"form_id": "f", "field": ["a"]}, headers=api.h("editor")
    )
    assert resp.json() == {"deleted": 1}
    resp = api.client.delete(
        "/v1/drafts", params={"form_id": "f"}, headers=api.h("editor")
    )
    assert resp.json() == {"deleted": 1}
    assert [
        d["form_id"]
        for d in api.client.get("/v1/drafts", headers=api.h("editor")).json()
    ] == ["g"]
    assert api.audit_count(resource_type="drafts", action="delete") == 2


def test_bad_input_names_the_fields(api: Api) -> None:
    resp = put(
        api, "editor", [{"form_id": "bad id with spaces", "field": "", "seq": -1}]
    )
    assert resp.status_code == 422
    fields = resp.json()["details"]["fields"]
    assert {"items.0.form_id", "items.0.field", "items.0.seq"} <= set(fields)
    assert (
        api.client.put(
            "/v1/drafts", json={"items": []}, headers=api.h("editor")
        ).status_code
        == 422
    )
    too_big = [{"form_id": "f", "field": "a", "value": "x" * 300_000, "seq": 1}]
    assert put(api, "editor", too_big).status_code == 422
    long_key = api.client.put(
        "/v1/drafts",
        json={"items": [{"form_id": "f", "field": "a"}]},
        headers=api.h("editor", **{"Idempotency-Key": "k" * 101}),
    )
    assert long_key.status_code == 422
    assert long_key.json()["details"]["fields"] == ["Idempotency-Key"]
