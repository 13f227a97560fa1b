"""Security headers on every api response, no server banner, docs switched off in prod."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ballast_api.main import create_app
from ballast_api.security_headers import SecurityHeadersMiddleware
from ballast_common.config import AppConfig
from ballast_common.db import DB
from ballast_testing.api import api_process
from tests.api.conftest import Api, make_config

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _assert_common(resp: Any) -> None:
    for name, value in COMMON.items():
        assert resp.headers.get(name) == value, (resp.request.url, name)
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert "server" not in resp.headers


def test_every_response_carries_the_headers(api: Api) -> None:
    responses = [
        api.client.get("/healthz"),
        api.client.get("/v1/projects"),  # 401
        api.client.get("/v1/projects", headers=api.h("viewer")),
        api.client.get("/v1/nowhere"),  # 404
        api.client.post("/v1/projects", headers=api.h("viewer"), json={}),  # 403/422
        api.login("editor"),
    ]
    assert [r.status_code for r in responses][:4] == [200, 401, 200, 404]
    for resp in responses:
        _assert_common(resp)
        assert resp.headers["content-security-policy"].startswith("default-src 'none'")


def test_token_responses_are_never_cached(api: Api) -> None:
    login = api.login("editor")
    assert login.status_code == 201
    assert login.headers["cache-control"] == "no-store"
    me = api.client.get("/v1/sessions/me", headers=api.h("editor"))
    assert me.headers["cache-control"] == "no-store"
    wrong = api.login("editor", "wrong")
    assert wrong.headers["cache-control"] == "no-store"
    other = api.client.get("/v1/projects", headers=api.h("editor"))
    assert other.headers.get("cache-control") != "no-store"


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Any]:
    made: list[TestClient] = []

    def make(
        base_url: str = "http://testserver", peer: str = "testclient", **overrides: Any
    ) -> TestClient:
        config = overrides.pop("config", None) or make_config(tmp_path, **overrides)
        client = TestClient(
            create_app(config=config, db=DB("sqlite://")),
            base_url=base_url,
            raise_server_exceptions=False,
            client=(peer, 50000),
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_hsts_auto_only_over_tls(make_client: Any) -> None:
    plain = make_client().get("/healthz")
    assert "strict-transport-security" not in plain.headers
    tls = make_client(base_url="https://testserver").get("/healthz")
    assert tls.headers["strict-transport-security"] == (
        "max-age=31536000; includeSubDomains"
    )


def test_hsts_behind_a_trusted_tls_proxy(make_client: Any) -> None:
    tls = {"X-Forwarded-Proto": "https"}
    trusted = make_client(peer="10.0.0.9", security={"trusted_proxies": ["10.0.0.0/8"]})
    assert "strict-transport-security" in trusted.get("/healthz", headers=tls).headers
    # Anyone else saying "https" is not believed.
    direct = make_client(
        peer="203.0.113.9", security={"trusted_proxies": ["10.0.0.0/8"]}
    )
    assert (
        "strict-transport-security" not in direct.get("/healthz", headers=tls).headers
    )


def test_hsts_always_and_never(make_client: Any) -> None:
    always = make_client(security={"hsts": "always", "hsts_max_age_s": 600})
    assert (
        always.get("/healthz").headers["strict-transport-security"]
        == "max-age=600; includeSubDomains"
    )
    never = make_client(base_url="https://testserver", security={"hsts": "never"})
    assert "strict-transport-security" not in never.get("/healthz").headers


DOCS = ("/docs", "/redoc", "/openapi.json")


def _prod(tmp_path: Path, **security: Any) -> AppConfig:
    return AppConfig(
        env="prod",
        paths={"data_dir": tmp_path / "data"},
        database={"url": "postgresql://ballast@db.invalid/ballast"},
        security={"secret_key": "a-long-production-secret-key", **security},
    )


def test_docs_are_on_outside_prod(make_client: Any) -> None:
    client = make_client()
    for path in DOCS:
        resp = client.get(path)
        assert resp.status_code == 200, path
        _assert_common(resp)
    # Swagger UI loads its scripts from a CDN: its CSP keeps only frame-ancestors.
    assert client.get("/docs").headers["content-security-policy"] == (
        "frame-ancestors 'none'"
    )


def test_docs_are_off_in_prod_unless_switched_on(
    make_client: Any, tmp_path: Path
) -> None:
    prod = make_client(config=_prod(tmp_path))
    for path in DOCS:
        resp = prod.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["code"] == "not_found"
        _assert_common(resp)
    assert prod.get("/healthz").status_code == 200
    on = make_client(config=_prod(tmp_path, api_docs=True))
    assert [on.get(p).status_code for p in DOCS] == [200, 200, 200]
    off = make_client(security={"api_docs": False})
    assert [off.get(p).status_code for p in DOCS] == [404, 404, 404]


def test_the_served_api_names_no_server(
    seeded_dbs: dict[str, str], tmp_path: Path
) -> None:
    env = {"BALLAST_PATHS__DATA_DIR": str(tmp_path / "data")}
    with api_process(seeded_dbs["sqlite"], env=env) as base:
        resp = httpx.get(f"{base}/healthz", timeout=30)
    assert resp.status_code == 200
    assert "server" not in resp.headers
    _assert_common(resp)


def test_headers_before_the_app_is_configured() -> None:
    # No lifespan has run (no configuration yet): the defaults hold, nothing crashes.
    client = TestClient(create_app(), raise_server_exceptions=False)
    resp = client.get("/v1/nowhere", headers={"X-Forwarded-For": "198.51.100.1"})
    assert resp.status_code == 404
    _assert_common(resp)
    assert "strict-transport-security" not in resp.headers


@pytest.mark.parametrize("sent_name", [b"x-frame-options", b"X-Frame-Options"])
def test_a_header_the_app_set_is_replaced_not_doubled(sent_name: bytes) -> None:
    # A response that already carries one of the headers (any case) ends with ours,
    # once; the others are added as usual. So do the per-request ones: HSTS (over
    # TLS) and no-store (on /v1/sessions); elsewhere the app's own values stay.
    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (sent_name, b"SAMEORIGIN"),
                    (b"Cache-Control", b"max-age=60"),
                    (b"Strict-Transport-Security", b"max-age=1"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    class _App:
        state = type("S", (), {"config": None})()

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    def headers_of(path: str, scheme: str) -> list[tuple[bytes, bytes]]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "path": path, "app": _App(), "scheme": scheme}
        asyncio.run(SecurityHeadersMiddleware(app)(scope, receive, send))
        return [(k.lower(), v) for k, v in sent[0]["headers"]]

    def values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
        return [v for k, v in headers if k == name]

    headers = headers_of("/v1/x", "http")
    assert values(headers, b"x-frame-options") == [b"DENY"]
    for name, value in COMMON.items():
        assert values(headers, name.encode()) == [value.encode()]
    assert (b"content-length", b"0") in headers
    assert values(headers, b"cache-control") == [b"max-age=60"]
    assert values(headers, b"strict-transport-security") == [b"max-age=1"]

    sessions = headers_of("/v1/sessions", "https")
    assert values(sessions, b"x-frame-options") == [b"DENY"]
    assert values(sessions, b"cache-control") == [b"no-store"]
    assert values(sessions, b"pragma") == [b"no-cache"]
    assert values(sessions, b"strict-transport-security") == [
        b"max-age=31536000; includeSubDomains"
    ]
