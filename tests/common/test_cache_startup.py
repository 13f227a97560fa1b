"""Every process makes its cache at start-up (`init_app`), so its audited writes bust
the other replicas' caches: L1 only without Redis, L1 + Redis with it."""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from ballast_common import __version__
from ballast_common import cache as cache_api
from ballast_common.app import init_app
from ballast_common.cache import Cache, CacheKeys
from ballast_common.config import load_config
from ballast_common.db import DB, reset_db
from ballast_testing.api import api_process
from ballast_testing.servers import RedisServer
from tests.api.conftest import _seeded

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No BALLAST_* from the shell; undo init_app's logging, default db and cache."""
    for name in list(os.environ):  # noqa: TID251 - isolating the test from the shell
        if name.startswith("BALLAST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BALLAST_DATABASE__URL", f"sqlite:///{tmp_path}/app.db")
    monkeypatch.setenv("BALLAST_PATHS__DATA_DIR", str(tmp_path / "data"))
    root = logging.getLogger()
    level = root.level
    yield
    cache_api.reset_cache()
    for handler in list(root.handlers):
        if handler.get_name() == "ballast":
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    structlog.reset_defaults()
    reset_db()


def test_init_app_makes_an_l1_only_cache_on_the_embedded_default() -> None:
    ctx = init_app("unit", log_stream=io.StringIO())
    assert ctx.cache is not None
    assert cache_api.current_cache() is ctx.cache
    assert ctx.cache.ping() == "none"
    assert not ctx.cache.has_l2


def test_init_app_makes_a_redis_backed_cache_when_redis_is_configured(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    monkeypatch.setenv("BALLAST_REDIS_URL", redis_server.url)
    stream = io.StringIO()
    ctx = init_app("unit", log_stream=stream)
    assert ctx.cache is cache_api.current_cache()
    assert ctx.cache is not None
    assert ctx.cache.ping() == "ok"
    assert '"l2": "ok"' in stream.getvalue()
    # A second init (a re-initialised process) replaces the cache.
    again = init_app("unit", log_stream=io.StringIO(), listen_for_busts=False)
    assert again.cache is not ctx.cache
    assert cache_api.current_cache() is again.cache


def test_the_cache_is_l1_only_without_redis_py(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    """The UI image may lack redis-py: the cache works on, from L1 (and says so)."""
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` fails
    cache = Cache(
        CacheKeys(version="t"), redis_url=redis_server.url, signing_key=b"k" * 32
    )
    assert not cache.has_l2
    assert cache.get_or_compute("k", lambda: 1) == 1


def test_a_write_through_the_api_busts_another_replicas_cache(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = f"sqlite:///{tmp_path}/api.db"
    _seeded(DB(url)).dispose()
    env = {
        "BALLAST_PATHS__DATA_DIR": str(tmp_path / "data"),
        "BALLAST_REDIS_URL": redis_server.url,
    }
    # Another replica (a UI process, say) with the same keys as the api's.
    reader = Cache(
        CacheKeys(version=__version__),
        redis_url=redis_server.url,
        signing_key=cache_api.signing_key(load_config()),
    )
    reader.start_listener()
    computes = 0

    def compute() -> int:
        nonlocal computes
        computes += 1
        return computes

    try:
        with (
            api_process(url, env=env, log_path=tmp_path / "api.log") as base,
            httpx.Client(base_url=base, timeout=30) as http,
        ):
            login = http.post(
                "/v1/sessions",
                json={"username": "editor", "password": "editor-demo-pass"},
            )
            assert login.status_code == 201, login.text
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"
            created = http.post("/v1/projects", json={"name": "cached"})
            assert created.status_code == 201, created.text
            pid = created.json()["id"]
            key = reader.keys.project(f"{pid}-{uuid.uuid4().hex[:6]}")
            tags = ["projects", f"projects:{pid}"]
            assert reader.get_or_compute(key, compute, tags=tags) == 1
            assert reader.get_or_compute(key, compute, tags=tags) == 1  # cached
            changed = http.patch(f"/v1/projects/{pid}", json={"name": "renamed"})
            assert changed.status_code == 200, changed.text
            # The api answered after its bust reached this replica: no stale value.
            assert reader.get_or_compute(key, compute, tags=tags) == 2
            # A read through the api busts nothing.
            assert http.get(f"/v1/projects/{pid}").status_code == 200
            assert reader.get_or_compute(key, compute, tags=tags) == 2
    finally:
        reader.close()
