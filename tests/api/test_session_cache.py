"""Sessions resolved from process memory for a few seconds (auth/session_cache.py):
a change made through the api is seen at once in this process, a change made behind its
back only once the entry expires."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ballast_api.auth import service as auth_service
from ballast_api.auth.session_cache import SessionCache, sessions
from ballast_api.principal import Principal
from ballast_common.models import utcnow
from tests.api.conftest import Api, new_id, open_session


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the database lookups `authenticate` makes."""
    seen: list[int] = []
    original = auth_service.retry_db_async

    async def counting(op: Any, **kwargs: Any) -> Any:
        seen.append(1)
        return await original(op, **kwargs)

    monkeypatch.setattr(auth_service, "retry_db_async", counting)
    return seen


def _me(api: Api, user: str) -> int:
    return int(api.client.get("/v1/sessions/me", headers=api.h(user)).status_code)


def _editor_id(api: Api) -> str:
    return str(api.sql("SELECT id FROM users WHERE username = 'editor'")[0][0])


def test_a_resolved_session_is_not_looked_up_again(
    api: Api, lookups: list[int]
) -> None:
    assert [_me(api, "editor") for _ in range(5)] == [200] * 5
    assert len(lookups) == 1


def test_logout_ends_the_session_at_once(api: Api) -> None:
    assert _me(api, "editor") == 200
    resp = api.client.delete("/v1/sessions/current", headers=api.h("editor"))
    assert resp.status_code == 204
    assert _me(api, "editor") == 401


def test_sign_out_everywhere_by_an_admin_is_seen_at_once(api: Api) -> None:
    assert _me(api, "editor") == 200
    resp = api.client.delete(
        f"/v1/users/{_editor_id(api)}/sessions", headers=api.h("admin")
    )
    assert resp.status_code == 204
    assert _me(api, "editor") == 401
    assert _me(api, "viewer") == 200


def test_a_role_change_applies_to_the_next_request(api: Api) -> None:
    def save() -> int:
        return int(
            api.client.put(
                "/v1/forms/cache.roles",
                json={"data": {"a": 1}},
                headers=api.h("editor", **{"Idempotency-Key": new_id()}),
            ).status_code
        )

    assert save() in (200, 201)
    editor = _editor_id(api)
    try:
        resp = api.client.patch(
            f"/v1/users/{editor}", json={"roles": ["viewer"]}, headers=api.h("admin")
        )
        assert resp.status_code == 200, resp.text
        # The change ended the editor's sessions: the old token is refused at once.
        assert save() == 401
        api.tokens["editor"] = open_session(api.db, api.config, "editor")
        assert save() == 403
    finally:
        # The demo users' roles outlive the test (the fixture keeps them).
        restored = api.client.patch(
            f"/v1/users/{editor}", json={"roles": ["editor"]}, headers=api.h("admin")
        )
        assert restored.status_code == 200, restored.text
    api.tokens["editor"] = open_session(api.db, api.config, "editor")
    assert save() == 200


def test_deactivation_applies_to_the_next_request(api: Api) -> None:
    assert _me(api, "editor") == 200
    resp = api.client.patch(
        f"/v1/users/{_editor_id(api)}",
        json={"is_active": False},
        headers=api.h("admin"),
    )
    assert resp.status_code == 200, resp.text
    assert _me(api, "editor") == 401


def test_a_change_behind_the_apis_back_is_seen_when_the_entry_expires(
    api: Api,
) -> None:
    assert _me(api, "editor") == 200
    api.sql(
        "UPDATE sessions SET revoked_at = :t WHERE user_id = "
        "(SELECT id FROM users WHERE username = 'editor')",
        t=utcnow(),
    )
    assert _me(api, "editor") == 200  # within the TTL (another replica's logout)
    sessions.clear()  # what the TTL does
    assert _me(api, "editor") == 401


def _principal(user: uuid.UUID, session: uuid.UUID) -> Principal:
    return Principal(
        user_id=user,
        username="u",
        display_name="u",
        roles=(),
        permissions=frozenset(),
        session_id=session,
    )


def test_cache_forgets_by_tag_expires_and_stays_bounded() -> None:
    cache = SessionCache(ttl_s=60, max_entries=4)
    now = utcnow()
    users = [uuid.uuid4() for _ in range(3)]
    ids = [uuid.uuid4() for _ in range(3)]
    for n in range(3):
        cache.put(
            1,
            f"d{n}",
            _principal(users[n], ids[n]),
            expires_at=now,
            last_seen_at=now,
        )
    cache.forget_tags(
        frozenset(
            {"users", f"users:{users[0]}", f"sessions:{ids[1]}", "users:x", "forms:1"}
        )
    )
    assert cache.get(1, "d0") is None
    assert cache.get(1, "d1") is None
    assert cache.get(1, "d2") is not None
    assert cache.get(2, "d2") is None  # another database
    for n in range(6):
        cache.put(
            1, f"e{n}", _principal(users[0], ids[0]), expires_at=now, last_seen_at=now
        )
    assert len(cache._entries) <= 4
    off = SessionCache(ttl_s=0)
    off.put(1, "d", _principal(users[0], ids[0]), expires_at=now, last_seen_at=now)
    assert off.get(1, "d") is None
    stale = SessionCache(ttl_s=-1)
    stale.ttl_s = 60
    stale.put(1, "d", _principal(users[0], ids[0]), expires_at=now, last_seen_at=now)
    stale._entries[(1, "d")] = stale._entries[(1, "d")].__class__(
        _principal(users[0], ids[0]), now, now, 0.0
    )
    assert stale.get(1, "d") is None
