"""The client address of audit rows and throttling: X-Forwarded-For counts only from a
trusted proxy (`security.trusted_proxies`), so a direct client cannot choose it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ballast_common.db import DB
from ballast_common.models import AuditLog, UserSession
from tests.api.conftest import PASSWORDS, make_config

SPOOF = "198.51.100.99"


@pytest.fixture
def make_client(peer_clients: Any) -> Any:
    """`make_client(peer, **security)`: the api as seen from the peer address `peer`."""
    return lambda peer, **security: peer_clients(peer, security=security)


def _login_ip(client: TestClient, forwarded: str | None) -> tuple[str | None, ...]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    resp = client.post(
        "/v1/sessions",
        json={"username": "editor", "password": PASSWORDS["editor"]},
        headers=headers,
    )
    assert resp.status_code == 201
    db: DB = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        audit = session.execute(
            select(AuditLog.ip_address)
            .where(AuditLog.action == "login")
            .order_by(AuditLog.id.desc())
            .limit(1)
        ).scalar_one()
        stored = session.execute(
            select(UserSession.ip).where(
                UserSession.id == uuid.UUID(resp.json()["session_id"])
            )
        ).scalar_one()
    return audit, stored


def test_a_direct_client_cannot_spoof_its_address(make_client: Any) -> None:
    client = make_client("203.0.113.7", trusted_proxies=["10.0.0.0/8"])
    assert _login_ip(client, SPOOF) == ("203.0.113.7", "203.0.113.7")
    assert _login_ip(client, f"{SPOOF}, 10.0.0.5") == ("203.0.113.7", "203.0.113.7")


def test_nothing_is_trusted_by_default_not_even_loopback(make_client: Any) -> None:
    client = make_client("127.0.0.1")
    assert _login_ip(client, SPOOF) == ("127.0.0.1", "127.0.0.1")


def test_a_trusted_proxy_names_the_client(make_client: Any) -> None:
    client = make_client("10.1.2.3", trusted_proxies=["10.0.0.0/8", "192.0.2.1"])
    assert _login_ip(client, SPOOF) == (SPOOF, SPOOF)
    # Through two trusted hops: the rightmost address that is no trusted proxy.
    assert _login_ip(client, f"{SPOOF}, 192.0.2.1") == (SPOOF, SPOOF)
    # What the client put in front of the chain itself is not believed.
    assert _login_ip(client, f"6.6.6.6, {SPOOF}, 192.0.2.1") == (SPOOF, SPOOF)
    # No header: the proxy itself.
    assert _login_ip(client, None) == ("10.1.2.3", "10.1.2.3")


def test_a_spoofing_client_is_throttled_by_its_real_address(make_client: Any) -> None:
    client = make_client(
        "203.0.113.8",
        trusted_proxies=["10.0.0.0/8"],
        login_address_rate_per_minute=3,
    )
    statuses = [
        client.post(
            "/v1/sessions",
            json={"username": f"nobody{i}", "password": "wrong-password"},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        ).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_a_trusted_proxy_itself_is_not_locked_out(make_client: Any) -> None:
    """A ui pod that names no browser address speaks for many users: per-address
    throttling spares it (per-account throttling still applies)."""
    client = make_client(
        "10.1.2.3", trusted_proxies=["10.0.0.0/8"], login_address_rate_per_minute=3
    )

    def fail(user: str, forwarded: str | None = None) -> int:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        return client.post(
            "/v1/sessions",
            json={"username": user, "password": "wrong-password"},
            headers=headers,
        ).status_code

    assert [fail(f"nobody{i}") for i in range(5)] == [401] * 5
    # The browser address it names is throttled as usual.
    assert [fail(f"someone{i}", SPOOF) for i in range(4)] == [401, 401, 401, 429]


def test_trusted_proxies_must_be_addresses_or_networks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        make_config(tmp_path, security={"trusted_proxies": ["ui.example.com"]})
