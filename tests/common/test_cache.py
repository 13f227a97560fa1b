"""The cache against a real Redis: L1/L2, keys, single flight, busting across replicas,
Redis going away and coming back."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import pickle
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ballast_common import cache as cache_api
from ballast_common.cache import Cache, CacheKeys, params_hash
from ballast_common.config import load_config
from ballast_testing.servers import (
    LOOPBACK,
    RedisServer,
    find_redis_server,
    free_port,
)

pytestmark = pytest.mark.integration

MakeCache = Callable[..., Cache]
KEY = b"test-signing-key" * 2


@pytest.fixture
def keys() -> CacheKeys:
    return CacheKeys(version=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def make_cache(keys: CacheKeys) -> Iterator[MakeCache]:
    made: list[Cache] = []

    def make(redis_url: str | None = None, **options: object) -> Cache:
        options.setdefault("signing_key", KEY)
        cache = Cache(keys, redis_url=redis_url, **options)  # type: ignore[arg-type]
        cache.start_listener()
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, value: object = "v", delay: float = 0.0) -> Callable[[], object]:
        def compute() -> object:
            with self._lock:
                self.calls += 1
            if delay:
                time.sleep(delay)
            return value

        return compute


def tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- keys


def test_keys_are_namespaced_versioned_and_never_collide(keys: CacheKeys) -> None:
    assert keys.key("a:b", "c") != keys.key("a", "b:c")
    assert keys.key("ns", "e", 1, {"x": 1, "y": 2}) == keys.key(
        "ns", "e", 1, {"y": 2, "x": 1}
    )
    assert keys.key("ns", "e", 1, {"x": 1}) != keys.key("ns", "e", 1, {"x": 2})
    assert keys.key("ns", "e").startswith(keys.prefix("ns"))
    assert f":v{keys.version}:" in keys.key("ns", "e")
    other = CacheKeys(version="other")
    assert other.project(7) != keys.project(7)
    assert len(params_hash({"a": 1})) == 20
    assert keys.user_session("u") != keys.form_data("f", "u") != keys.job_result("j")
    assert keys.computed("f", {"a": 1}) != keys.analysis("d", {"a": 1})
    assert keys.projects_list("u", {"page": 1}) != keys.dataset_preview("d", 10)
    with pytest.raises(ValueError, match="empty"):
        keys.key("", "e")
    assert CacheKeys.tag("project", 3) == "project:3"


# --------------------------------------------------------------------------- L1 only


def test_l1_only_computes_once_then_hits(
    make_cache: MakeCache, keys: CacheKeys
) -> None:
    cache = make_cache()
    count = Counter()
    key = keys.key("t", "x")
    assert cache.get_or_compute(key, count("one")) == "one"
    assert cache.get_or_compute(key, count("two")) == "one"
    assert count.calls == 1
    assert cache.stats()["l2"] == "none"
    assert cache.ping() == "none"


def test_l1_entries_expire(make_cache: MakeCache, keys: CacheKeys) -> None:
    cache = make_cache()
    count = Counter()
    key = keys.key("t", "ttl")
    cache.get_or_compute(key, count("a"), ttl=0.05)
    deadline = time.monotonic() + 0.05
    while time.monotonic() <= deadline:
        time.sleep(0.01)
    assert cache.get_or_compute(key, count("b"), ttl=0.05) == "b"
    assert count.calls == 2


def test_l1_is_bounded_in_entries_and_bytes(
    make_cache: MakeCache, keys: CacheKeys
) -> None:
    cache = make_cache(max_entries=3, max_bytes=10_000)
    for i in range(5):
        cache.get_or_compute(keys.key("t", "n", i), lambda i=i: i)
    assert cache.stats()["l1_entries"] == 3
    big = make_cache(max_entries=100, max_bytes=4096)
    for i in range(4):
        big.get_or_compute(keys.key("t", "b", i), lambda: b"x" * 1500)
    assert big.stats()["l1_bytes"] <= 4096
    # A value larger than the whole L1 is still returned (and not kept).
    assert len(big.get_or_compute(keys.key("t", "huge"), lambda: b"y" * 9000)) == 9000


def test_bust_without_redis_drops_local_values(
    make_cache: MakeCache, keys: CacheKeys
) -> None:
    cache = make_cache()
    t = tag()
    count = Counter()
    key = keys.key("t", "tagged")
    cache.get_or_compute(key, count("a"), tags=[t])
    assert cache.bust(t) == 0
    assert cache.get_or_compute(key, count("b"), tags=[t]) == "b"
    assert cache.clear(namespace="t") == 0
    assert cache.bust() == 0


# --------------------------------------------------------------------------- L2


def test_l2_is_shared_between_replicas(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    a, b = make_cache(redis_server.url), make_cache(redis_server.url)
    count = Counter()
    key = keys.key("t", "shared")
    assert a.get_or_compute(key, count({"rows": [1, 2]})) == {"rows": [1, 2]}
    assert b.get_or_compute(key, count("other")) == {"rows": [1, 2]}
    assert count.calls == 1
    assert b.stats()["l2_keys"] >= 1
    assert b.ping() == "ok"


class _Planted:
    """A pickle that runs code when loaded: what anyone able to write to Redis could
    store under a cache key."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "ran"))  # type: ignore[return-value]


def test_an_entry_not_signed_by_the_deployment_is_never_unpickled(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer, tmp_path: Path
) -> None:
    cache = make_cache(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    count = Counter()
    marker = tmp_path / "ran"
    planted = pickle.dumps({"value": _Planted(marker), "tags": {}})
    crafted = [
        planted,  # a bare pickle, as wave 1 stored them
        b"\0" * 32 + planted,  # a made-up signature
        hmac.new(b"another deployment's key", planted, hashlib.sha256).digest()
        + planted,
        b"",
        b"short",
    ]
    for i, raw in enumerate(crafted):
        key = keys.key("t", f"planted-{i}")
        client.set(key, raw)
        assert cache.get_or_compute(key, count(f"computed-{i}")) == f"computed-{i}"
    assert not marker.exists()
    assert count.calls == len(crafted)
    # The computed values replaced the planted ones, under this deployment's signature.
    other = make_cache(redis_server.url)
    assert (
        other.get_or_compute(keys.key("t", "planted-0"), count("again")) == "computed-0"
    )
    assert count.calls == len(crafted)


def test_replicas_with_different_secrets_share_no_values(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    ours = make_cache(redis_server.url)
    theirs = make_cache(redis_server.url, signing_key=b"a different deployment")
    count = Counter()
    key = keys.key("t", "secret")
    assert theirs.get_or_compute(key, count("theirs")) == "theirs"
    assert ours.get_or_compute(key, count("ours")) == "ours"
    assert count.calls == 2


def test_a_signing_key_must_not_be_trivial(keys: CacheKeys) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Cache(keys, signing_key=b"")


def test_a_bust_reaches_every_replica_before_it_returns(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    a, b = make_cache(redis_server.url), make_cache(redis_server.url)
    t = tag()
    key = keys.key("t", "busted")
    assert a.get_or_compute(key, lambda: "old", tags=[t]) == "old"
    assert b.get_or_compute(key, lambda: "stale?", tags=[t]) == "old"  # now in b's L1
    acked = a.bust(t)
    assert acked >= 2  # a's and b's listeners applied it
    # Right after the bust returned, neither replica serves the old value.
    assert b.get_or_compute(key, lambda: "new", tags=[t]) == "new"
    assert a.get_or_compute(key, lambda: "newer", tags=[t]) == "new"


def test_a_value_computed_across_a_bust_is_not_served(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    a, b = make_cache(redis_server.url), make_cache(redis_server.url)
    t = tag()
    key = keys.key("t", "race")

    def compute_while_written() -> str:
        b.bust(t)  # a write commits while the value is being computed
        return "computed before the write"

    assert a.get_or_compute(key, compute_while_written, tags=[t]) == (
        "computed before the write"
    )
    assert b.get_or_compute(key, lambda: "after", tags=[t]) == "after"


def test_single_flight_across_two_replicas(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    a, b = make_cache(redis_server.url), make_cache(redis_server.url)
    count = Counter()
    key = keys.key("t", "stampede")
    compute = count("once", delay=0.3)
    barrier = threading.Barrier(100)
    results: list[object] = []
    lock = threading.Lock()

    def worker(cache: Cache) -> None:
        barrier.wait()
        value = cache.get_or_compute(key, compute)
        with lock:
            results.append(value)

    threads = [
        threading.Thread(target=worker, args=(a if i % 2 else b,)) for i in range(100)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert results == ["once"] * 100
    assert count.calls == 1


def test_clear_by_namespace_and_tag(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    cache = make_cache(redis_server.url)
    for i in range(3):
        cache.get_or_compute(keys.key("gone", "x", i), lambda: 1)
    cache.get_or_compute(keys.key("kept", "x"), lambda: 2)
    assert cache.clear(namespace="gone") == 3
    count = Counter()
    assert cache.get_or_compute(keys.key("kept", "x"), count(3)) == 2
    t = tag()
    cache.get_or_compute(keys.key("kept", "t"), lambda: "a", tags=[t])
    assert cache.clear(tag=t) >= 1
    assert cache.get_or_compute(keys.key("kept", "t"), lambda: "b", tags=[t]) == "b"


def test_async_twin(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    a, b = make_cache(redis_server.url), make_cache(redis_server.url)
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "async"

    key = keys.key("t", "async")
    assert asyncio.run(a.get_or_compute_async(key, compute)) == "async"
    assert asyncio.run(b.get_or_compute_async(key, compute)) == "async"
    assert asyncio.run(a.get_or_compute_async(key, compute)) == "async"
    assert calls == 1


# --------------------------------------------------------------------------- failures


def test_redis_unreachable_degrades_to_compute(
    make_cache: MakeCache, keys: CacheKeys
) -> None:
    cache = make_cache(f"redis://{LOOPBACK}:{free_port()}/0", retry_redis_after_s=60)
    count = Counter()
    key = keys.key("t", "down")
    assert cache.get_or_compute(key, count("a")) == "a"
    assert cache.get_or_compute(key, count("b")) == "a"  # untagged: L1 still serves
    t = tag()
    tagged = keys.key("t", "down-tagged")
    assert cache.get_or_compute(tagged, count("c"), tags=[t]) == "c"
    # Busts from other replicas cannot arrive: a tagged value is not served from L1.
    assert cache.get_or_compute(tagged, count("d"), tags=[t]) == "d"
    assert cache.stats()["l2"] == "down"
    assert cache.ping() == "down"
    assert cache.bust(t) == 0


def _redis_on(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            str(find_redis_server()),
            "--port", str(port), "--bind", LOOPBACK, "--save", "",
            "--appendonly", "no", "--dir", str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return proc
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


def test_redis_restart_during_use(
    make_cache: MakeCache, keys: CacheKeys, tmp_path: Path
) -> None:
    port = free_port()
    proc = _redis_on(port, tmp_path)
    try:
        url = f"redis://{LOOPBACK}:{port}/0"
        a = make_cache(url, retry_redis_after_s=0.2)
        b = make_cache(url, retry_redis_after_s=0.2)
        t = tag()
        key = keys.key("t", "restart")
        assert a.get_or_compute(key, lambda: "v1", tags=[t]) == "v1"
        assert a.listening
        assert b.listening
        proc.terminate()
        proc.wait(timeout=10)
        # Once a replica's listener has lost Redis, a bust from elsewhere could pass it
        # by: it serves no tagged value from L1 until it listens again.
        deadline = time.monotonic() + 15
        while a.listening or b.listening:
            assert time.monotonic() < deadline, "the listeners never noticed"
            time.sleep(0.05)
        # Down: answers keep coming (computed), nothing raises.
        assert a.get_or_compute(key, lambda: "v2", tags=[t]) == "v2"
        assert b.get_or_compute(key, lambda: "v3", tags=[t]) == "v3"
        proc = _redis_on(port, tmp_path)
        # Back: after the retry window the replicas share L2 and busts again.
        deadline = time.monotonic() + 15
        while a.ping() != "ok" or b.bust(t) < 2:
            assert time.monotonic() < deadline, "the cache never came back"
            time.sleep(0.1)
        assert a.get_or_compute(key, lambda: "v4", tags=[t]) == "v4"
        assert b.get_or_compute(key, lambda: "v5", tags=[t]) == "v4"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_module_level_cache_from_config(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, tmp_path: Path
) -> None:
    monkeypatch.setenv("BALLAST_REDIS_URL", redis_server.url)
    monkeypatch.setenv("BALLAST_PATHS__DATA_DIR", str(tmp_path))
    cache = cache_api.init_cache(load_config())
    try:
        assert cache_api.current_cache() is cache
        assert cache_api.get_cache() is cache
        assert cache.has_l2
        key = cache_api.cache_keys().key("t", uuid.uuid4().hex)
        assert cache_api.get_or_compute(key, lambda: 41) == 41
        assert cache_api.get_or_compute(key, lambda: 42) == 41

        async def compute() -> int:
            return 43

        assert asyncio.run(cache_api.get_or_compute_async(key, compute)) == 41
    finally:
        cache.close()
        cache_api._cache = None


# --------------------------------------------------------------------------- CLI


def test_cli_clear_and_stats(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from ballast_common import __version__
    from ballast_common.cli import app

    runner = CliRunner()
    monkeypatch.setenv("BALLAST_REDIS_URL", redis_server.url)
    monkeypatch.setenv("BALLAST_PATHS__DATA_DIR", str(tmp_path))
    namespace = f"cli{uuid.uuid4().hex[:8]}"
    cache = cache_api.build_cache(load_config())
    try:
        assert cache.keys.version == __version__
        for i in range(3):
            cache.get_or_compute(cache.keys.key(namespace, "x", i), lambda i=i: i)
        t = tag()
        cache.get_or_compute(cache.keys.key("other", t), lambda: "tagged", tags=[t])
        out = runner.invoke(app, ["cache", "stats"])
        assert out.exit_code == 0, out.output
        assert "l2: ok" in out.output
        out = runner.invoke(app, ["cache", "clear", "--namespace", namespace])
        assert out.exit_code == 0, out.output
        assert out.output.startswith(f"cleared 3 key(s) of namespace {namespace}")
        out = runner.invoke(app, ["cache", "clear", "--tag", t])
        assert out.exit_code == 0, out.output
        assert f"busted tag {t}:" in out.output
        # The running replica dropped its copy when the CLI busted the tag.
        assert (
            cache.get_or_compute(cache.keys.key("other", t), lambda: "fresh", tags=[t])
            == "fresh"
        )
        out = runner.invoke(app, ["cache", "clear", "--namespace", "a", "--tag", "b"])
        assert out.exit_code == 2
        assert "not both" in out.output
    finally:
        cache.close()
    monkeypatch.setenv("BALLAST_REDIS_URL", f"redis://{LOOPBACK}:{free_port()}/0")
    out = runner.invoke(app, ["cache", "clear"])
    assert out.exit_code == 1
    assert out.output.strip() == "error: Redis does not answer: nothing was cleared"
    for command in ("clear", "stats"):
        assert runner.invoke(app, ["cache", command, "--help"]).exit_code == 0


# --------------------------------------------------------------------------- writes


def test_an_audited_write_busts_every_replica_once_committed(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, tmp_path: Path
) -> None:
    from ballast_common.db import DB, migrate, run_tx, run_tx_async

    monkeypatch.setenv("BALLAST_REDIS_URL", redis_server.url)
    monkeypatch.setenv("BALLAST_PATHS__DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path}/w.db"
    db = DB(url)
    migrate(db=db)
    writer = cache_api.init_cache(load_config())
    reader = cache_api.build_cache(load_config())  # another replica
    try:
        pid = uuid.uuid4().hex
        key = reader.keys.project(pid)
        tags = ["projects", f"projects:{pid}"]
        assert reader.get_or_compute(key, lambda: "v1", tags=tags) == "v1"
        run_tx(lambda uow: uow.audit("update", "projects", pid), db=db)
        assert reader.get_or_compute(key, lambda: "v2", tags=tags) == "v2"

        # A rolled-back write busts nothing.
        def failing(uow: object) -> None:
            uow.audit("update", "projects", pid)  # type: ignore[attr-defined]
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            run_tx(failing, db=db)
        assert reader.get_or_compute(key, lambda: "v3", tags=tags) == "v2"

        # The api's async runner busts too, before it returns.
        async def write_async() -> None:
            try:
                await run_tx_async(
                    lambda uow: uow.audit("update", "projects", pid), db=db
                )
            finally:
                await db.async_engine.dispose()

        asyncio.run(write_async())
        assert reader.get_or_compute(key, lambda: "v4", tags=tags) == "v4"
    finally:
        reader.close()
        writer.close()
        cache_api._cache = None
        db.dispose()


# --------------------------------------------------------------------------- metrics


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_lookups_by_layer_latency_and_evictions(
    make_cache: MakeCache, keys: CacheKeys, redis_server: RedisServer
) -> None:
    a, b = make_cache(redis_server.url), make_cache(redis_server.url, max_entries=1)
    before = {
        (layer, result): _sample(
            "ballast_cache_requests_total", layer=layer, result=result
        )
        for layer in ("l1", "l2", "compute")
        for result in ("hit", "miss")
    }
    l1_latency = _sample("ballast_cache_get_seconds_count", layer="l1")
    evictions = _sample("ballast_cache_evictions_total")
    key = keys.key("t", "metrics")
    a.get_or_compute(key, lambda: 1)  # l1 miss, l2 miss, compute
    a.get_or_compute(key, lambda: 2)  # l1 hit
    b.get_or_compute(key, lambda: 3)  # l1 miss, l2 hit
    b.get_or_compute(keys.key("t", "other"), lambda: 4)  # evicts b's first entry

    def delta(layer: str, result: str) -> float:
        now = _sample("ballast_cache_requests_total", layer=layer, result=result)
        return now - before[(layer, result)]

    assert delta("l1", "hit") == 1
    assert delta("l1", "miss") == 3
    assert delta("l2", "hit") == 1
    assert delta("l2", "miss") == 2
    assert delta("compute", "miss") == 2
    assert _sample("ballast_cache_get_seconds_count", layer="l1") == l1_latency + 1
    assert _sample("ballast_cache_evictions_total") >= evictions + 1

    async def compute() -> int:
        return 5

    async_key = keys.key("t", "metrics-async")
    computes = _sample("ballast_cache_get_seconds_count", layer="compute")
    asyncio.run(a.get_or_compute_async(async_key, compute))
    asyncio.run(a.get_or_compute_async(async_key, compute))
    assert _sample("ballast_cache_get_seconds_count", layer="compute") == computes + 1
    assert _sample("ballast_cache_get_seconds_count", layer="l1") == l1_latency + 2


def test_a_bust_that_missed_redis_is_sent_when_it_answers(
    make_cache: MakeCache, keys: CacheKeys, tmp_path: Path
) -> None:
    port = free_port()
    url = f"redis://{LOOPBACK}:{port}/0"
    writer = Cache(
        keys, redis_url=url, retry_redis_after_s=0.05, signing_key=KEY
    )  # Redis not up yet
    t = tag()
    key = keys.key("t", "pending")
    assert writer.bust(t) == 0  # could not reach Redis: kept
    # Its own tagged values are not served from L1 while a bust is unsent.
    assert writer.get_or_compute(key, lambda: "a", tags=[t]) == "a"
    assert writer.get_or_compute(key, lambda: "b", tags=[t]) == "b"
    proc = _redis_on(port, tmp_path)
    try:
        reader = make_cache(url)
        assert reader.get_or_compute(key, lambda: "old", tags=[t]) == "old"
        # Once Redis answers the writer again, its next call sends the kept bust.
        deadline = time.monotonic() + 15
        attempt = 0
        while writer.ping() != "ok" or writer._pending:
            assert time.monotonic() < deadline, "the kept bust was never sent"
            attempt += 1  # a new key each time: an L1 hit does not ask Redis
            writer.get_or_compute(keys.key("t", "other", attempt), lambda: 0)
            time.sleep(0.06)
        assert reader.get_or_compute(key, lambda: "new", tags=[t]) == "new"
    finally:
        writer.close()
        proc.terminate()
        proc.wait(timeout=10)
