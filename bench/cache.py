"""Cache benchmark: `get_or_compute` over a throwaway Redis, replicas in other processes.

Writes bench/results/cache.json with
- l1_hit_p99_ms: an L1 hit of a tagged value (target <= 0.05);
- l2_hit_p99_ms: an L2 hit (a value kept only in Redis: GET, its tag versions, PTTL;
  target <= 1.0);
- second_call_ms: the Workbench's projects list (`ballast_ui.cache.list_projects`) asked
  a second time with the same parameters, against a real api process: the p95 over
  distinct parameter sets (target < 10);
- stampede_computes: how many times 100 concurrent misses of one key, 50 threads in each
  of 2 processes, computed the value (target 1);
- bust_visible_ms: an audited write (`run_tx`) from its commit to its return, which is
  when every replica (2 other processes and the writer) has dropped what it busted: p99
  (target <= 50).

`python -m bench.cache` runs it alone; `make bench` with the others.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from ballast_common import __version__
from ballast_common.cache import Cache, CacheKeys
from ballast_common.config import AppConfig
from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from ballast_testing.servers import throwaway_redis
from bench.common import api_process, percentile, write_result

HITS = 20_000
L2_HITS = 2_000
SECOND_CALLS = 50
STAMPEDE_THREADS = 50
BUSTS = 200
# Every replica of one deployment shares the key (here: the bench and its children).
KEY = b"bench-cache-signing-key"
# A page of ten projects, roughly: what a Workbench answer weighs.
PAYLOAD = {"items": [{"id": str(uuid.uuid4()), "name": "x" * 40} for _ in range(10)]}


def _keys() -> CacheKeys:
    return CacheKeys(version=f"bench-{uuid.uuid4().hex[:8]}")


def _p99_ms(samples: list[float]) -> float:
    return round(percentile(samples, 99) * 1000, 4)


def _hit_p99_ms(cache: Cache, name: str, hits: int, warmup: int) -> float:
    """p99 of `hits` lookups of one cached value, the first `warmup` not counted."""
    try:
        key = cache.keys.key("bench", name)
        cache.get_or_compute(key, lambda: PAYLOAD, tags=["projects"])
        samples = []
        for _ in range(hits):
            start = time.perf_counter()
            cache.get_or_compute(key, lambda: PAYLOAD, tags=["projects"])
            samples.append(time.perf_counter() - start)
        return _p99_ms(samples[warmup:])
    finally:
        cache.close()


def l1_hit(url: str) -> float:
    cache = Cache(_keys(), redis_url=url, signing_key=KEY)
    cache.start_listener()
    return _hit_p99_ms(cache, "l1", HITS, warmup=1000)


def l2_hit(url: str) -> float:
    # max_bytes=1: every value is larger than the whole L1, so it lives in Redis only.
    cache = Cache(_keys(), redis_url=url, max_bytes=1, signing_key=KEY)
    return _hit_p99_ms(cache, "l2", L2_HITS, warmup=100)


def second_call(url: str, tmp: Path) -> float:
    """The UI's cached projects list against a real api process (SQLite, seeded)."""
    from ballast_common import cache as cache_api
    from ballast_ui import cache as ui_cache
    from ballast_ui.client import ApiClient, make_http

    db_url = f"sqlite:///{tmp}/cache-bench.db"
    db = DB(db_url)
    migrate(db=db)
    run_tx(seed_demo, db=db)
    db.dispose()
    env = {"BALLAST_PATHS__DATA_DIR": str(tmp / "data"), "BALLAST_REDIS_URL": url}
    with api_process(db_url, env=env, log_path=tmp / "api.log") as base:
        login = httpx.post(
            f"{base}/v1/sessions",
            json={"username": "editor", "password": "editor-demo-pass"},
            timeout=30,
        )
        login.raise_for_status()
        ui_cache.ui_cache(AppConfig(redis_url=url))
        http = make_http(base, timeout=30)
        try:
            api = ApiClient(http, login.json()["token"])
            user = login.json()["user"]["id"]
            samples = []
            for i in range(SECOND_CALLS):
                query = f"bench-{i}"
                ui_cache.list_projects(api, user, size=10, q=query)  # computes
                start = time.perf_counter()
                ui_cache.list_projects(api, user, size=10, q=query)
                samples.append(time.perf_counter() - start)
        finally:
            http.close()
            cache_api.reset_cache()
    return round(percentile(samples, 95) * 1000, 4)


# ----------------------------------------------------------------- other processes


def _child(mode: str, url: str, version: str, key: str, start_at: float) -> None:
    """In a child process: a replica that listens (`replica`) until stdin closes, or
    50 threads missing `key` at `start_at` (`stampede`)."""
    cache = Cache(CacheKeys(version=version), redis_url=url, signing_key=KEY)
    cache.start_listener()
    if mode == "replica":
        print("ready", flush=True)
        sys.stdin.read()
        cache.close()
        return
    counter = redis.Redis.from_url(url)

    def compute() -> str:
        counter.incr(f"{key}:computes")
        time.sleep(0.2)
        return "value"

    def miss() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        assert cache.get_or_compute(key, compute) == "value"

    threads = [threading.Thread(target=miss) for _ in range(STAMPEDE_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    cache.close()


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cache", "child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def stampede(url: str) -> int:
    keys = _keys()
    key = keys.key("bench", "stampede")
    start_at = time.time() + 3.0  # both processes up and waiting by then
    procs = [
        _spawn("stampede", url, keys.version, key, str(start_at)) for _ in range(2)
    ]
    for proc in procs:
        proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise RuntimeError("a stampede process failed")
    return int(redis.Redis.from_url(url).get(f"{key}:computes") or 0)


@contextlib.contextmanager
def _replicas(url: str, count: int) -> Iterator[None]:
    procs = [_spawn("replica", url, __version__, "-", "0") for _ in range(count)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a replica did not start")
        yield
    finally:
        for proc in procs:
            proc.communicate(timeout=30)


def bust_visible(url: str, tmp: Path) -> float:
    from ballast_common import cache as cache_api

    db = DB(f"sqlite:///{tmp}/bust-bench.db")
    migrate(db=db)
    cache_api.init_cache(AppConfig(redis_url=url))
    samples = []
    try:
        with _replicas(url, 2):
            committed: list[float] = []

            def write(uow: Any) -> None:
                uow.audit("update", "projects", f"bench-{len(committed)}")
                # After the commit, before the bust (the unit of work's order).
                uow.after_commit(lambda: committed.append(time.perf_counter()))

            for _ in range(BUSTS):
                run_tx(write, db=db)
                samples.append(time.perf_counter() - committed[-1])
    finally:
        cache_api.reset_cache()
        db.dispose()
    return _p99_ms(samples)


def run() -> dict[str, Any]:
    with throwaway_redis() as server, tempfile.TemporaryDirectory() as tmp:
        result = {
            "l1_hit_p99_ms": l1_hit(server.url),
            "l2_hit_p99_ms": l2_hit(server.url),
            "second_call_ms": second_call(server.url, Path(tmp)),
            "stampede_computes": stampede(server.url),
            "bust_visible_ms": bust_visible(server.url, Path(tmp)),
        }
    write_result("cache", result)
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        mode, url, version, key, start_at = sys.argv[2:7]
        _child(mode, url, version, key, float(start_at))
    else:
        import json

        print(json.dumps(run(), indent=2))
