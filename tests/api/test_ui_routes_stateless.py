"""The ui's own routes keep nothing in the process: any replica serves any request.

A real api process (SQLite) behind two separate instances of the ui's routes. It lives
with the api tests for their seeded database.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ballast_testing.api import api_process
from ballast_testing.servers import free_port
from ballast_ui import server
from ballast_ui.auth import COOKIE_NAME


@pytest.fixture(scope="module")
def live_api(
    seeded_dbs: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The api as a process on the suite's seeded SQLite database."""
    data = tmp_path_factory.mktemp("replica-api") / "data"
    with api_process(
        seeded_dbs["sqlite"], env={"BALLAST_PATHS__DATA_DIR": str(data)}
    ) as base:
        yield base


def _token(base: str) -> str:
    resp = httpx.post(
        f"{base}/v1/sessions",
        json={"username": "editor", "password": "editor-demo-pass"},
        timeout=30,
    )
    resp.raise_for_status()
    return str(resp.json()["token"])


def _replica() -> TestClient:
    return TestClient(Starlette(routes=server.ROUTES))


def test_a_nonce_issued_anywhere_is_redeemed_by_another_replica_once(
    live_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BALLAST_API_URL", live_api)
    token = _token(live_api)
    nonce = httpx.post(
        f"{live_api}/v1/sessions/handoffs",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["nonce"]
    first, second = _replica(), _replica()
    resp = second.post("/_ballast/session", json={"nonce": nonce})
    assert resp.status_code == 200
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}={token};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert resp.headers["cache-control"] == "no-store"
    for replica in (first, second):
        again = replica.post("/_ballast/session", json={"nonce": nonce})
        assert again.status_code == 400
        assert again.json()["code"] == "invalid_handoff"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"nonce": 5}',
        b'{"nonce": ""}',
        b'{"nonce": "' + b"x" * 500 + b'"}',
    ],
)
def test_garbage_nonces_are_a_400(
    live_api: str, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    monkeypatch.setenv("BALLAST_API_URL", live_api)
    resp = _replica().post("/_ballast/session", content=body)
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_handoff"


def test_api_down_is_a_503_not_a_logout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_API_URL", f"http://127.0.0.1:{free_port()}")
    resp = _replica().post("/_ballast/session", json={"nonce": "n" * 43})
    assert resp.status_code == 503
    assert "set-cookie" not in resp.headers


def test_sso_start_without_single_sign_on_goes_back_with_an_error(
    live_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The api has no OIDC here (404), then is gone: the browser goes back to the
    sign-in page with an error it says, and gets no sign-in cookie."""
    for api, error in (
        (live_api, "sso_not_configured"),
        (f"http://127.0.0.1:{free_port()}", "temporarily_unavailable"),
    ):
        monkeypatch.setenv("BALLAST_API_URL", api)
        resp = _replica().get("/_ballast/sso", follow_redirects=False)
        assert resp.status_code == 303
        assert resp.headers["location"] == f"../?error={error}"
        assert "set-cookie" not in resp.headers
