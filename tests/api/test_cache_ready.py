"""/readyz reports the cache's layers; a cache whose Redis is down is degraded, not unready."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ballast_common import cache as cache_api
from ballast_common.config import AppConfig
from ballast_testing.servers import LOOPBACK, RedisServer, free_port
from tests.api.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def with_cache() -> Iterator[None]:
    yield
    cache_api.reset_cache()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_readyz_without_a_cache_says_off(api: Api) -> None:
    cache_api.reset_cache()
    body = api.client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["cache"] == {"status": "off"}


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("with_cache")
def test_readyz_reports_an_l1_only_cache(api: Api) -> None:
    cache_api.init_cache(AppConfig(), listen=False)
    resp = api.client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["cache"]["status"] == "ok"
    assert body["cache"]["l1"] == "ok"
    assert body["cache"]["l2"] == "none"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("with_cache")
def test_readyz_reports_redis_as_the_caches_l2(
    api: Api, redis_server: RedisServer
) -> None:
    cache = cache_api.init_cache(
        AppConfig(cache={"redis_url": redis_server.url}), listen=False
    )
    cache.get_or_compute(cache.keys.key("ready", "x"), lambda: 1)
    body = api.client.get("/readyz").json()
    assert body["cache"]["status"] == "ok"
    assert body["cache"]["l2"] == "ok"
    assert body["cache"]["l1_entries"] >= 1


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("with_cache")
def test_the_caches_redis_down_degrades_but_keeps_the_api_ready(api: Api) -> None:
    down = f"redis://{LOOPBACK}:{free_port()}/0"
    cache_api.init_cache(AppConfig(cache={"redis_url": down}), listen=False)
    resp = api.client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["cache"]["status"] == "degraded"
    assert body["cache"]["l2"] == "down"
