"""Login throttling: per account and per address, exponential backoff that always ends,
shared across api processes through Redis, and degrading to process memory without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from ballast_api.auth import service as auth_service
from ballast_api.auth.throttle import (
    KEY_PREFIX,
    LoginThrottle,
    account_key,
    backoff_seconds,
)
from ballast_api.main import create_app
from ballast_common.config import AppConfig
from ballast_common.db import DB, run_tx
from ballast_common.models import AuditLog
from ballast_common.seed import seed_demo
from ballast_testing.api import api_process
from ballast_testing.servers import RedisServer, free_port, throwaway_redis
from tests.api.conftest import PASSWORDS, _reset, make_config

WRONG = "not-the-password"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# The tests reach the api through a trusted proxy (as the ui pods do), which names the
# browser's address in X-Forwarded-For: one app, many client addresses.
PROXY = "10.0.0.2"
ATTACKER = "203.0.113.10"


@contextlib.contextmanager
def _client(url: str, config: AppConfig) -> Iterator[TestClient]:
    db = DB(url)
    _reset(db)
    run_tx(seed_demo, db=db)
    app = create_app(config=config, db=db)
    try:
        with TestClient(
            app, raise_server_exceptions=False, client=(PROXY, 40000)
        ) as client:
            try:
                yield client
            finally:
                client.portal.call(db.adispose)
    finally:
        db.dispose()


MakeClient = Callable[..., contextlib.AbstractContextManager[TestClient]]


@pytest.fixture
def make_client(seeded_dbs: dict[str, str], tmp_path: Path) -> MakeClient:
    """`make_client(redis_url=None, **security)`: the api over SQLite with these settings."""

    def make(
        redis_url: str | None = None, **security: Any
    ) -> contextlib.AbstractContextManager[TestClient]:
        security.setdefault("trusted_proxies", ["10.0.0.0/8"])
        config = make_config(tmp_path, security=security, redis_url=redis_url)
        return _client(seeded_dbs["sqlite"], config)

    return make


def _login(
    client: TestClient, user: str, password: str, ip: str = ATTACKER, **headers: str
) -> Any:
    return client.post(
        "/v1/sessions",
        json={"username": user, "password": password},
        headers={"X-Forwarded-For": ip, **headers},
    )


def _audits(client: TestClient, action: str) -> list[AuditLog]:
    db: DB = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        return list(
            session.execute(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
            ).scalars()
        )


# --------------------------------------------------------------------------- in process


def test_fifty_wrong_passwords_are_throttled_with_retry_after(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real_verify = auth_service.averify_password

    async def counting_verify(password: str, hashed: str | None) -> bool:
        verified.append(password)
        return await real_verify(password, hashed)

    monkeypatch.setattr(auth_service, "averify_password", counting_verify)
    throttled_before = _sample("ballast_login_attempts_total", outcome="throttled")
    locks_before = _sample("ballast_login_locks_total", scope="account")
    with make_client() as client:
        rate = client.app.state.config.security.login_rate_per_minute  # type: ignore[attr-defined]
        statuses = []
        for _ in range(50):
            resp = _login(client, "editor", WRONG)
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                last = resp
        assert statuses == [401] * rate + [429] * (50 - rate)
        body = last.json()
        assert body["code"] == "rate_limited"
        assert body["details"]["scope"] == "account"
        retry_after = int(last.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert body["details"]["retry_after_s"] == retry_after
        # The right password does not help while the lock holds (at an address
        # this account never logged in from).
        assert _login(client, "editor", PASSWORDS["editor"]).status_code == 429
        # Throttled attempts cost no argon2 and no database write.
        assert len(verified) == rate
        failed = _audits(client, "login_failed")
        assert len(failed) == rate
        assert {(r.new_values or {})["reason"] for r in failed} == {"wrong_password"}
        (lock,) = _audits(client, "login_throttled")
        assert lock.resource_type == "users"
        assert (lock.new_values or {})["scope"] == "account"
        assert (lock.new_values or {})["locked_for_s"] == 60
        assert lock.ip_address == ATTACKER
    assert _sample("ballast_login_attempts_total", outcome="throttled") == (
        throttled_before + 51 - rate
    )
    assert _sample("ballast_login_locks_total", scope="account") == locks_before + 1


def test_unknown_usernames_are_audited_without_the_name(
    make_client: MakeClient,
) -> None:
    with make_client() as client:
        assert _login(client, "Sup3rSecret!", WRONG).status_code == 401
        (row,) = _audits(client, "login_failed")
        assert row.resource_id == "unknown"
        assert "Sup3rSecret!" not in str(row.new_values)
        assert (row.new_values or {})["reason"] == "unknown_user"


def test_one_address_spraying_many_accounts_is_throttled(
    make_client: MakeClient,
) -> None:
    with make_client(login_address_rate_per_minute=5) as client:
        statuses = [_login(client, f"nobody{i}", WRONG).status_code for i in range(8)]
        assert statuses == [401] * 5 + [429] * 3
        resp = _login(client, "viewer", PASSWORDS["viewer"])
        assert resp.status_code == 429
        assert resp.json()["details"]["scope"] == "address"
        (lock,) = _audits(client, "login_throttled")
        assert lock.resource_type == "addresses"
        assert lock.resource_id == ATTACKER


def test_a_victim_is_not_locked_out_at_a_known_address(
    make_client: MakeClient,
) -> None:
    """An attacker elsewhere locks the account, not its owner's usual address."""
    home = "198.51.100.1"
    with make_client() as client:
        assert _login(client, "editor", PASSWORDS["editor"], ip=home).status_code == 201
        statuses = [_login(client, "editor", WRONG).status_code for _ in range(21)]
        assert statuses[-1] == 429
        # The owner, from the address they logged in from before: not locked.
        assert _login(client, "editor", PASSWORDS["editor"], ip=home).status_code == 201
        # A typo at home is checked (401), and starts no second lock.
        assert _login(client, "editor", WRONG, ip=home).status_code == 401
        assert len(_audits(client, "login_throttled")) == 1
        # ... while the attacker stays locked, and so does any other new address.
        assert _login(client, "editor", WRONG).status_code == 429
        other = "192.0.2.3"
        assert (
            _login(client, "editor", PASSWORDS["editor"], ip=other).status_code == 429
        )


def test_a_lock_ends_on_its_own(make_client: MakeClient) -> None:
    with make_client(login_rate_per_minute=2, login_backoff_base_s=1) as client:
        assert [_login(client, "viewer", WRONG).status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]
        # However much the attacker keeps trying, the lock is not extended.
        assert _login(client, "viewer", WRONG).status_code == 429
        time.sleep(2.1)  # a lock of 1 s; waiting longer is only ever safer
        assert _login(client, "viewer", PASSWORDS["viewer"]).status_code == 201


def test_backoff_doubles_up_to_the_cap_and_is_forgotten() -> None:
    sec = AppConfig(
        security={
            "login_rate_per_minute": 2,
            "login_backoff_base_s": 60,
            "login_backoff_max_s": 900,
        }
    ).security
    assert [backoff_seconds(sec, n) for n in range(1, 8)] == [
        60,
        120,
        240,
        480,
        900,
        900,
        900,
    ]

    async def locks() -> list[int]:
        throttle = LoginThrottle(sec)
        seconds = []
        for _ in range(6):
            started = []
            while not started:
                assert await throttle.check("carol", "192.0.2.1") is None
                started = await throttle.failed("carol", "192.0.2.1")
            (lock,) = started
            seconds.append(lock.seconds)
            throttled = await throttle.check("carol", "192.0.2.1")
            assert throttled is not None
            assert throttled.retry_after_s <= lock.seconds
            # The lock's time is up (as if it had passed).
            await throttle.memory.storage.clear(f"lock/account/{account_key('carol')}")
        # Strikes are forgotten after login_backoff_memory_s without a lock.
        await throttle.memory.storage.clear(f"strikes/account/{account_key('carol')}")
        started = []
        while not started:
            started = await throttle.failed("carol", "192.0.2.1")
        seconds.append(started[0].seconds)
        return seconds

    assert asyncio.run(locks()) == [60, 120, 240, 480, 900, 900, 60]


def test_login_rotates_a_session_sent_along(make_client: MakeClient) -> None:
    with make_client() as client:
        first = _login(client, "editor", PASSWORDS["editor"]).json()["token"]
        again = _login(
            client,
            "editor",
            PASSWORDS["editor"],
            Authorization=f"Bearer {first}",
        )
        assert again.status_code == 201
        second = again.json()["token"]
        old = client.get(
            "/v1/sessions/me", headers={"Authorization": f"Bearer {first}"}
        )
        assert old.status_code == 401
        assert "ended" in old.json()["message"]
        new = client.get(
            "/v1/sessions/me", headers={"Authorization": f"Bearer {second}"}
        )
        assert new.status_code == 200
        assert len(_audits(client, "session_rotated")) == 1
        # A garbage token sent along does not stop a login.
        assert (
            _login(
                client, "editor", PASSWORDS["editor"], Authorization="Bearer nonsense"
            ).status_code
            == 201
        )


# --------------------------------------------------------------------------- Redis


@pytest.fixture
def redis_clean(redis_server: RedisServer) -> Iterator[RedisServer]:
    yield redis_server
    client = redis_server.client()
    try:
        keys = list(client.scan_iter(f"{KEY_PREFIX}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.integration
def test_two_api_processes_over_one_redis_share_the_counters(
    redis_clean: RedisServer, seeded_dbs: dict[str, str], tmp_path: Path
) -> None:
    env = {
        "BALLAST_PATHS__DATA_DIR": str(tmp_path / "data"),
        "BALLAST_REDIS_URL": redis_clean.url,
        "BALLAST_SECURITY__LOGIN_RATE_PER_MINUTE": "4",
    }
    user = f"ghost-{uuid.uuid4().hex[:8]}"  # keys of its own in the shared Redis
    with (
        api_process(seeded_dbs["postgresql"], env=env) as a,
        api_process(seeded_dbs["postgresql"], env=env) as b,
        httpx.Client(timeout=30) as http,
    ):

        def login(base: str) -> int:
            return http.post(
                f"{base}/v1/sessions", json={"username": user, "password": WRONG}
            ).status_code

        # Two failures on each: neither process alone saw four.
        assert [login(a), login(b), login(a), login(b)] == [401] * 4
        assert login(a) == 429
        resp = http.post(f"{b}/v1/sessions", json={"username": user, "password": WRONG})
        assert resp.status_code == 429
        assert int(resp.headers["retry-after"]) >= 1
        keys = redis_clean.client().keys(f"{KEY_PREFIX}:lock/account/*")
        assert f"{KEY_PREFIX}:lock/account/{account_key(user)}".encode() in keys


@pytest.mark.integration
def test_redis_going_away_degrades_to_process_memory(
    make_client: MakeClient,
) -> None:
    fallbacks_before = _sample("ballast_login_limiter_fallbacks_total")
    with (
        throwaway_redis() as redis_server,
        make_client(redis_url=redis_server.url, login_rate_per_minute=3) as client,
    ):
        state = client.app.state  # type: ignore[attr-defined]
        assert _login(client, "viewer", WRONG).status_code == 401
        assert state.login_throttle.backend_name == "redis"
        assert _sample("ballast_login_limiter_degraded") == 0
        redis_server.stop()
        # Logins go on: no 500, the right password works, wrong ones still count.
        home = "198.51.100.7"
        assert _login(client, "viewer", PASSWORDS["viewer"], ip=home).status_code == 201
        assert _sample("ballast_login_limiter_degraded") == 1
        statuses = [_login(client, "viewer", WRONG).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
    assert _sample("ballast_login_limiter_fallbacks_total") > fallbacks_before


def test_no_redis_at_all_is_the_embedded_default(make_client: MakeClient) -> None:
    with make_client(login_rate_per_minute=1) as client:
        assert _login(client, "viewer", WRONG).status_code == 401
        assert client.app.state.login_throttle.backend_name == "memory"  # type: ignore[attr-defined]
        assert _login(client, "viewer", WRONG).status_code == 429


@pytest.mark.integration
def test_an_unreachable_redis_from_the_start_never_gives_500(
    make_client: MakeClient,
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with make_client(redis_url=dead, login_rate_per_minute=2) as client:
        statuses = [_login(client, "viewer", WRONG).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]


def test_known_addresses_can_be_switched_off() -> None:
    sec = AppConfig(
        security={"login_rate_per_minute": 1, "login_known_address_s": 0}
    ).security

    async def scenario() -> object:
        throttle = LoginThrottle(sec)
        await throttle.succeeded("dave", "198.51.100.4")
        await throttle.failed("dave", "203.0.113.4")
        return await throttle.check("dave", "198.51.100.4")

    throttled = asyncio.run(scenario())
    assert throttled is not None


@pytest.mark.integration
def test_the_limiter_returns_to_redis_when_it_answers_again(
    redis_clean: RedisServer,
) -> None:
    sec = AppConfig(security={"login_rate_per_minute": 5}).security
    dead = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> tuple[bool, float, bool, float, int]:
        throttle = LoginThrottle(sec, dead)
        await throttle.failed("erin", "192.0.2.9")
        degraded, gauge = throttle.degraded, _sample("ballast_login_limiter_degraded")
        # Redis is back (here: the live one) and the retry pause is over.
        live = LoginThrottle(sec, redis_clean.url)
        await throttle.aclose()
        throttle.redis, throttle.pool = live.redis, live.pool
        throttle._down_until = 0.0
        await throttle.failed("erin", "192.0.2.9")
        client = redis_clean.client()
        try:
            keys = len(client.keys(f"{KEY_PREFIX}:LIMITER/fail/account/*"))
        finally:
            client.close()
        result = (
            degraded,
            gauge,
            throttle.degraded,
            _sample("ballast_login_limiter_degraded"),
            keys,
        )
        await throttle.aclose()
        return result

    assert asyncio.run(scenario()) == (True, 1.0, False, 0.0, 1)
