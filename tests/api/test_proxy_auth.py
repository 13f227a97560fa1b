"""Trusted-header sign-in behind an authenticating proxy (oauth2-proxy and the like):
the headers count only when the connection's own peer is a trusted proxy."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
import structlog.testing
from fastapi.testclient import TestClient
from sqlalchemy import select

from ballast_common.db import DB
from ballast_common.models import AuditLog, User

PROXY = "10.20.0.7"
HEADERS = {
    "X-Forwarded-User": "ivy@corp.example",
    "X-Forwarded-Email": "ivy@corp.example",
    "X-Forwarded-Groups": "staff,ballast-editors",
}


@pytest.fixture
def make_client(peer_clients: Any) -> Any:
    """`make_client(peer, proxy=..., **security)`: the api seen from `peer`."""

    def make(peer: str, proxy: dict[str, Any] | None = None, **security: Any) -> Any:
        settings = {"enabled": True, "group_roles": {"ballast-editors": "editor"}}
        return peer_clients(
            peer,
            security={"trusted_proxies": ["10.20.0.0/16"], **security},
            auth={"proxy": settings | (proxy or {})},
        )

    return make


def _audit(client: TestClient, action: str) -> list[AuditLog]:
    db: DB = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        return list(
            session.execute(select(AuditLog).where(AuditLog.action == action)).scalars()
        )


def test_the_trusted_proxy_signs_a_user_in_with_mapped_roles(make_client: Any) -> None:
    client = make_client(PROXY)
    resp = client.post("/v1/sessions/proxy", headers=HEADERS)
    assert resp.status_code == 201, resp.text
    user = resp.json()["user"]
    assert user["username"] == "ivy@corp.example"
    assert user["roles"] == ["editor"]
    token = resp.json()["token"]
    assert (
        client.get(
            "/v1/sessions/me", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )
    again = client.post("/v1/sessions/proxy", headers=HEADERS)
    assert again.json()["user"]["id"] == user["id"]
    created = _audit(client, "user_created")
    assert len(created) == 1
    assert created[0].new_values["method"] == "proxy"


def test_headers_from_anyone_else_are_ignored_logged_and_audited(
    make_client: Any,
) -> None:
    client = make_client("203.0.113.50")
    # Naming the proxy in X-Forwarded-For changes nothing: the peer itself counts.
    spoofed = {**HEADERS, "X-Forwarded-For": PROXY}
    # The log events themselves, whatever stream or level earlier tests left the
    # process's logging at.
    with structlog.testing.capture_logs() as events:
        resp = client.post("/v1/sessions/proxy", headers=spoofed)
    assert resp.status_code == 401, resp.text
    logged = [e for e in events if e["event"] == "proxy_header_spoofed"]
    assert len(logged) == 1
    assert "203.0.113.50" in str(logged[0])
    assert "trusted proxy" in resp.json()["message"]
    rows = _audit(client, "proxy_header_rejected")
    assert len(rows) == 1
    assert rows[0].new_values["peer"] == "203.0.113.50"
    assert rows[0].new_values["claimed_user"] == "ivy@corp.example"
    assert _audit(client, "user_created") == []
    db: DB = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        assert (
            session.execute(
                select(User).where(User.username == "ivy@corp.example")
            ).first()
            is None
        )


def test_nothing_is_trusted_without_trusted_proxies(make_client: Any) -> None:
    client = make_client("127.0.0.1", trusted_proxies=[])
    assert client.post("/v1/sessions/proxy", headers=HEADERS).status_code == 401


def test_unmapped_groups_missing_user_and_custom_header_names(make_client: Any) -> None:
    client = make_client(PROXY)
    nobody = {**HEADERS, "X-Forwarded-Groups": "staff"}
    assert client.post("/v1/sessions/proxy", headers=nobody).status_code == 403
    missing = {k: v for k, v in HEADERS.items() if k != "X-Forwarded-User"}
    assert client.post("/v1/sessions/proxy", headers=missing).status_code == 401
    huge = {**HEADERS, "X-Forwarded-User": "x" * 300}
    assert client.post("/v1/sessions/proxy", headers=huge).status_code == 401

    custom = make_client(
        PROXY,
        proxy={
            "user_header": "X-Auth-Request-User",
            "groups_header": "X-Auth-Request-Groups",
            "default_role": "viewer",
        },
    )
    resp = custom.post(
        "/v1/sessions/proxy",
        headers={"X-Auth-Request-User": "jo", "X-Auth-Request-Groups": "staff"},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["user"]["roles"] == ["viewer"]
    # The default header is not read when another one is configured.
    assert custom.post("/v1/sessions/proxy", headers=HEADERS).status_code == 401


def test_proxy_sign_in_off_is_404(make_client: Any) -> None:
    client = make_client(PROXY, proxy={"enabled": False})
    assert client.post("/v1/sessions/proxy", headers=HEADERS).status_code == 404
    assert client.get("/v1/sessions/methods").json()["proxy"] is False
