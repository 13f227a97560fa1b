"""Session lifetime: the idle timer is refreshed in time for any idle timeout; sign-out
everywhere (self and admin), audited."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ballast_api.auth.service import touch_interval
from ballast_api.main import create_app
from ballast_common.db import DB, run_tx
from ballast_common.models import utcnow
from ballast_common.seed import seed_demo
from tests.api.conftest import Api, _reset, make_config, open_session


def test_touch_interval_is_a_third_of_the_idle_timeout_at_most_15s() -> None:
    assert touch_interval(1800) == timedelta(seconds=15)
    assert touch_interval(45) == timedelta(seconds=15)
    assert touch_interval(30) == timedelta(seconds=10)
    assert touch_interval(10) == timedelta(seconds=10 / 3)


@pytest.fixture
def short_idle(
    backend: str, seeded_dbs: dict[str, str], tmp_path: Path
) -> Iterator[Api]:
    """The api with a 30 s idle timeout (15 s refreshes would log active users out)."""
    db = DB(seeded_dbs[backend])
    _reset(db)
    run_tx(seed_demo, db=db)
    config = make_config(tmp_path, security={"session_idle_timeout_s": 30})
    app = create_app(config=config, db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        try:
            yield Api(
                client, db, config, {"editor": open_session(db, config, "editor")}
            )
        finally:
            client.portal.call(db.adispose)
    db.dispose()


def _last_seen(api: Api) -> str:
    row = api.sql(
        "SELECT last_seen_at FROM sessions WHERE user_id = "
        "(SELECT id FROM users WHERE username='editor')"
    )
    return str(row[0][0])[:19]


def test_short_idle_timeout_is_refreshed_before_it_expires(short_idle: Api) -> None:
    # 12 s idle of 30: the old fixed 15 s refresh would not have written it, and two
    # more such gaps would have ended a session in use.
    before = utcnow() - timedelta(seconds=12)
    short_idle.sql(
        "UPDATE sessions SET last_seen_at = :t WHERE user_id = "
        "(SELECT id FROM users WHERE username='editor')",
        t=before,
    )
    me = short_idle.client.get("/v1/sessions/me", headers=short_idle.h("editor"))
    assert me.status_code == 200
    assert _last_seen(short_idle) > str(before.replace(tzinfo=None))[:19]


def test_recent_activity_is_not_written_again(short_idle: Api) -> None:
    # Within the refresh interval a request is a read only.
    short_idle.client.get("/v1/sessions/me", headers=short_idle.h("editor"))
    seen = _last_seen(short_idle)
    short_idle.client.get("/v1/sessions/me", headers=short_idle.h("editor"))
    assert _last_seen(short_idle) == seen


def _sessions_of(api: Api, user: str) -> list[str]:
    return [open_session(api.db, api.config, user) for _ in range(2)]


def _me(api: Api, token: str) -> int:
    resp = api.client.get(
        "/v1/sessions/me", headers={"Authorization": f"Bearer {token}"}
    )
    return resp.status_code


def test_sign_out_everywhere_ends_every_session_of_mine_only(api: Api) -> None:
    others = _sessions_of(api, "editor")
    resp = api.client.delete("/v1/sessions", headers=api.h("editor"))
    assert resp.status_code == 204
    assert [_me(api, t) for t in [api.tokens["editor"], *others]] == [401] * 3
    assert _me(api, api.tokens["viewer"]) == 200
    rows = api.sql(
        "SELECT resource_id, user_id FROM audit_log WHERE action = 'logout_all'"
    )
    assert len(rows) == 1
    editor_id = api.sql("SELECT id FROM users WHERE username='editor'")[0][0]
    assert uuid.UUID(str(rows[0][0])) == uuid.UUID(str(editor_id))
    # Ended already: the old token cannot do it again.
    assert api.client.delete("/v1/sessions", headers=api.h("editor")).status_code == 401


def test_admin_signs_a_user_out_everywhere(api: Api) -> None:
    others = _sessions_of(api, "editor")
    editor_id = api.sql("SELECT id FROM users WHERE username='editor'")[0][0]
    url = f"/v1/users/{editor_id}/sessions"
    # Not for editors (even for themselves through this route) ...
    assert api.client.delete(url, headers=api.h("editor")).status_code == 403
    assert _me(api, api.tokens["editor"]) == 200
    # ... for admins.
    assert api.client.delete(url, headers=api.h("admin")).status_code == 204
    assert [_me(api, t) for t in [api.tokens["editor"], *others]] == [401] * 3
    assert _me(api, api.tokens["admin"]) == 200
    assert api.audit_count(action="logout_all") == 1
    # A new login works as usual afterwards.
    assert api.login("editor").status_code == 201


def test_admin_sign_out_of_an_unknown_user_is_404(api: Api) -> None:
    url = "/v1/users/00000000-0000-0000-0000-000000000000/sessions"
    resp = api.client.delete(url, headers=api.h("admin"))
    assert resp.status_code == 404
    assert api.audit_count(action="logout_all") == 0
