from __future__ import annotations

import hashlib
from datetime import timedelta

from ballast_common.models import utcnow
from tests.api.conftest import Api


def test_login_returns_opaque_token_stored_only_hashed(api: Api) -> None:
    resp = api.login("editor")
    assert resp.status_code == 201
    body = resp.json()
    token = body["token"]
    assert len(token) >= 40
    assert body["user"]["username"] == "editor"
    assert body["user"]["roles"] == ["editor"]
    assert "projects:write" in body["user"]["permissions"]
    stored = [r[0] for r in api.sql("SELECT token_hash FROM sessions")]
    assert token not in stored
    assert (
        hashlib.sha256(token.encode()).hexdigest() not in stored
    )  # peppered HMAC, not a bare hash
    assert all(len(h) == 64 for h in stored)


def test_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    wrong = api.login("editor", "nope")
    unknown = api.login("nobody", "nope")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()["message"]
        == unknown.json()["message"]
        == "wrong username or password"
    )
    assert wrong.json()["code"] == "unauthenticated"
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_me_and_logout(api: Api) -> None:
    me = api.client.get("/v1/sessions/me", headers=api.h("viewer"))
    assert me.status_code == 200
    assert me.json()["roles"] == ["viewer"]
    assert "projects:write" not in me.json()["permissions"]
    out = api.client.delete("/v1/sessions/current", headers=api.h("viewer"))
    assert out.status_code == 204
    again = api.client.get("/v1/sessions/me", headers=api.h("viewer"))
    assert again.status_code == 401
    assert "ended" in again.json()["message"]
    assert api.audit_count(action="logout") == 1


def test_missing_and_garbage_tokens(api: Api) -> None:
    assert api.client.get("/v1/sessions/me").status_code == 401
    resp = api.client.get(
        "/v1/sessions/me", headers={"Authorization": "Bearer garbage"}
    )
    assert resp.status_code == 401
    assert resp.json()["code"] == "unauthenticated"


def test_idle_timeout(api: Api) -> None:
    idle = api.config.security.session_idle_timeout_s
    api.sql(
        "UPDATE sessions SET last_seen_at = :t WHERE user_id = (SELECT id FROM users WHERE username='editor')",
        t=utcnow() - timedelta(seconds=idle + 1),
    )
    resp = api.client.get("/v1/sessions/me", headers=api.h("editor"))
    assert resp.status_code == 401
    assert "idle" in resp.json()["message"]


def test_absolute_timeout(api: Api) -> None:
    api.sql(
        "UPDATE sessions SET expires_at = :t WHERE user_id = (SELECT id FROM users WHERE username='editor')",
        t=utcnow() - timedelta(seconds=1),
    )
    resp = api.client.get("/v1/sessions/me", headers=api.h("editor"))
    assert resp.status_code == 401
    assert "absolute" in resp.json()["message"]


def test_activity_extends_idle_window(api: Api) -> None:
    idle = api.config.security.session_idle_timeout_s
    old = utcnow() - timedelta(seconds=idle - 5)
    api.sql(
        "UPDATE sessions SET last_seen_at = :t WHERE user_id = (SELECT id FROM users WHERE username='editor')",
        t=old,
    )
    assert api.client.get("/v1/sessions/me", headers=api.h("editor")).status_code == 200
    seen = api.sql(
        "SELECT last_seen_at FROM sessions WHERE user_id = (SELECT id FROM users WHERE username='editor')"
    )[0][0]
    assert str(seen)[:19] > str(old.replace(tzinfo=None))[:19]


def test_disabled_account_cannot_log_in(api: Api) -> None:
    api.sql("UPDATE users SET is_active = :f WHERE username = 'viewer'", f=False)
    assert api.login("viewer").status_code == 401
    assert api.client.get("/v1/sessions/me", headers=api.h("viewer")).status_code == 401


def test_login_validation_names_fields(api: Api) -> None:
    resp = api.client.post("/v1/sessions", json={"username": ""})
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "validation_error"
    assert set(body["details"]["fields"]) == {"username", "password"}
    assert body["trace_id"]
