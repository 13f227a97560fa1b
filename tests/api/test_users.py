from __future__ import annotations

from tests.api.conftest import Api, new_id


def test_preferences_round_trip_and_validation(api: Api) -> None:
    got = api.client.get("/v1/users/me/preferences", headers=api.h("viewer"))
    assert got.status_code == 200
    assert got.json() == {"theme": "auto", "language": "en", "timezone": "UTC"}
    body = {"theme": "dark", "language": "de", "timezone": "Europe/Berlin"}
    put = api.client.put("/v1/users/me/preferences", json=body, headers=api.h("viewer"))
    assert put.status_code == 200
    assert (
        api.client.get("/v1/users/me/preferences", headers=api.h("viewer")).json()
        == body
    )
    assert (
        api.client.get("/v1/sessions/me", headers=api.h("viewer")).json()["preferences"]
        == body
    )
    bad = api.client.put(
        "/v1/users/me/preferences",
        json={"theme": "neon", "language": "xx", "timezone": "Mars/Base"},
        headers=api.h("viewer"),
    )
    assert bad.status_code == 422
    assert set(bad.json()["details"]["fields"]) == {"theme", "language", "timezone"}
    assert api.audit_count(resource_type="users", action="update") >= 1


def test_admin_lists_creates_and_changes_users(api: Api) -> None:
    listed = api.client.get("/v1/users", headers=api.h("admin")).json()
    assert [u["username"] for u in listed["items"]] == ["admin", "editor", "viewer"]
    assert listed["items"][0]["roles"] == ["admin"]
    created = api.client.post(
        "/v1/users",
        json={
            "username": "newbie",
            "password": "a-long-password",
            "roles": ["editor"],
            "email": "n@example.com",
        },
        headers=api.h("admin", **{"Idempotency-Key": new_id()}),
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["roles"] == ["editor"]
    login = api.client.post(
        "/v1/sessions", json={"username": "newbie", "password": "a-long-password"}
    )
    assert login.status_code == 201
    changed = api.client.patch(
        f"/v1/users/{user['id']}",
        json={
            "roles": ["viewer", "editor"],
            "is_active": False,
            "expected_version": user["version"],
        },
        headers=api.h("admin"),
    )
    assert changed.status_code == 200
    assert changed.json()["roles"] == ["editor", "viewer"]
    assert changed.json()["is_active"] is False
    assert (
        api.client.post(
            "/v1/sessions", json={"username": "newbie", "password": "a-long-password"}
        ).status_code
        == 401
    )
    stale = api.client.patch(
        f"/v1/users/{user['id']}",
        json={"display_name": "x", "expected_version": 1},
        headers=api.h("admin"),
    )
    assert stale.status_code == 409
    dup = api.client.post(
        "/v1/users",
        json={"username": "newbie", "password": "a-long-password"},
        headers=api.h("admin"),
    )
    assert dup.status_code == 409


def test_user_admin_rules(api: Api) -> None:
    assert api.client.get("/v1/users", headers=api.h("editor")).status_code == 403
    assert (
        api.client.post(
            "/v1/users",
            json={"username": "x1", "password": "a-long-password"},
            headers=api.h("editor"),
        ).status_code
        == 403
    )
    me = api.client.get("/v1/sessions/me", headers=api.h("admin")).json()
    self_demote = api.client.patch(
        f"/v1/users/{me['id']}", json={"roles": ["viewer"]}, headers=api.h("admin")
    )
    assert self_demote.status_code == 422
    bad = api.client.post(
        "/v1/users",
        json={"username": "Bad Name", "password": "short", "roles": ["root"]},
        headers=api.h("admin"),
    )
    assert bad.status_code == 422
    assert {"username", "password", "roles.0"} <= set(bad.json()["details"]["fields"])
