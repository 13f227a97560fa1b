"""`get_or_compute`: L1 in-process LRU, L2 Redis, single-flight, busting by tag.

Built on cachetools (L1: an LRU bounded in entries and in bytes, a TTL per entry) and
redis-py (L2, locks, tag versions, pub/sub). Not cashews: most callers are synchronous
(Streamlit, Celery, `run_tx`), and busting must wait for every replica (below), which
needs the tag-version and acknowledgement protocol spelt out here anyway.

- A value is stored with the versions of its tags (``ballast:tagv:<tag>`` counters in
  Redis) read *before* it was computed; it is served only while those versions stand.
- `bust(*tags)` (called after an audited write commits) increments the tags' versions,
  publishes them on ``ballast:bust``, and waits up to ``bust_wait_ms`` until every
  subscribed replica has applied them to its L1 (each acknowledges the message), so a
  write is never answered stale from another replica's L1 after it returns.
- Single flight: in one process a per-key lock; across processes a Redis lock
  (``SET NX PX lock_timeout``); the others wait for the winner's value.
- Without Redis (the embedded default) the cache is L1 only. When Redis fails, the
  cache logs once, counts ``ballast_cache_errors_total`` and goes on with L1 and
  computing for ``retry_redis_after_s``; values that carry tags are then not served from
  L1 (busts from other replicas cannot arrive), so a Redis outage costs speed, never
  correctness. A bust that could not reach Redis is kept and sent once Redis answers
  again (its L2 values would otherwise outlive the write). When the bust listener
  reconnects (Redis restarted: tag versions may have started again from 0), every
  tagged L1 value and every local tag version is dropped, and a value whose tag
  versions were read before that is not kept in L1. Without redis-py installed the
  cache is L1 only (logged). Values must be picklable; treat returned values as
  read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import pickle
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from cachetools import LRUCache
from prometheus_client import REGISTRY, Counter, Histogram

from ballast_common.cache.keys import CacheKeys
from ballast_common.telemetry.logging import get_logger
from ballast_common.telemetry.metrics import get_or_create

T = TypeVar("T")
log = get_logger(__name__)
_MISS = object()
CHANNEL = "ballast:bust"
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


def _requests() -> Counter:
    return get_or_create(
        "ballast_cache_requests_total",
        lambda: Counter(
            "ballast_cache_requests_total",
            "Cache lookups by layer (l1, l2) and result (hit, miss), and computes.",
            ("layer", "result"),
            registry=REGISTRY,
        ),
    )


def _latency() -> Histogram:
    return get_or_create(
        "ballast_cache_get_seconds",
        lambda: Histogram(
            "ballast_cache_get_seconds",
            "Time to answer get_or_compute, by where the value came from.",
            ("layer",),
            buckets=(0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.25, 1, 5),
            registry=REGISTRY,
        ),
    )


def _counter(name: str, doc: str) -> Counter:
    return get_or_create(name, lambda: Counter(name, doc, registry=REGISTRY))


# An L2 entry is HMAC-SHA256(signing key, pickle) followed by the pickle.
_MAC_SIZE = 32


@dataclass
class _Entry:
    value: Any
    size: int
    tags: dict[str, int]
    expires: float


class _L1(LRUCache[str, _Entry]):
    """LRU bounded in bytes (maxsize, with sizes) and in entries."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=lambda e: max(1, e.size))
        self.max_entries = max_entries
        self.evictions = _counter(
            "ballast_cache_evictions_total", "L1 entries evicted by its capacity."
        )

    def __setitem__(self, key: str, value: _Entry) -> None:
        if value.size > self.maxsize:
            return  # larger than the whole cache: L2 only
        while key not in self and len(self) >= self.max_entries:
            self.popitem()
        super().__setitem__(key, value)

    def popitem(self) -> tuple[str, _Entry]:
        self.evictions.inc()
        return super().popitem()


class Cache:
    """One process's cache (see the module docstring)."""

    def __init__(
        self,
        keys: CacheKeys,
        *,
        redis_url: str | None = None,
        ttl: float = 3600,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        lock_timeout_s: float = 30.0,
        bust_wait_ms: int = 50,
        retry_redis_after_s: float = 5.0,
        redis_client: Any | None = None,
        signing_key: bytes,
    ) -> None:
        if len(signing_key) < 16:
            raise ValueError("the cache's signing key must have at least 16 bytes")
        self.keys = keys
        self._signing_key = signing_key
        self.ttl = ttl
        self.lock_timeout_s = lock_timeout_s
        self.bust_wait_s = bust_wait_ms / 1000
        self.retry_redis_after_s = retry_redis_after_s
        self._l1 = _L1(max_entries, max_bytes)
        self._lock = threading.RLock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._tagv: dict[str, int] = {}
        self._redis = redis_client
        if self._redis is None and redis_url:
            try:
                import redis
            except ImportError:
                # An image without the `cache` extra (redis-py): L1 only, said once.
                log.warning("cache_l2_unavailable", reason="redis-py is not installed")
            else:
                self._redis = redis.Redis.from_url(
                    redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
                )
        self._down_until = 0.0
        self._subscribed = False
        # Tags whose bust did not reach Redis: sent again once it answers.
        self._pending: set[str] = set()
        # Counts the bust listener's (re)connections: tag versions read in an earlier
        # generation may predate a Redis restart and are not trusted for L1.
        self._generation = 0
        self.replica = uuid.uuid4().hex[:12]
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._errors = _counter(
            "ballast_cache_errors_total", "Redis errors the cache went on without."
        )
        self._forged = _counter(
            "ballast_cache_rejected_entries_total",
            "L2 entries not signed with this deployment's key (never unpickled).",
        )

    # ------------------------------------------------------------------ public

    @property
    def has_l2(self) -> bool:
        return self._redis is not None

    def get_or_compute(
        self,
        key: str,
        fn: Callable[[], T],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> T:
        """The cached value of `key`, else `fn()` computed once and cached for `ttl` s."""
        started = time.perf_counter()
        tags = tuple(tags)
        found = self._l1_get(key)
        if found is not _MISS:
            _latency().labels("l1").observe(time.perf_counter() - started)
            return found  # type: ignore[no-any-return]
        found = self._l2_get(key)
        if found is not _MISS:
            _latency().labels("l2").observe(time.perf_counter() - started)
            return found  # type: ignore[no-any-return]
        with self._key_lock(key):
            found = self._l1_get(key, count=False)
            if found is _MISS:
                found = self._l2_get(key, count=False)
            if found is not _MISS:
                return found  # type: ignore[no-any-return]
            generation = self._generation
            versions = self._tag_versions(tags)
            token = self._acquire(key)
            if token is None:
                found = self._wait_for(key)
                if found is not _MISS:
                    return found  # type: ignore[no-any-return]
            try:
                value = fn()
                _requests().labels("compute", "miss").inc()
                self._store(key, value, ttl, versions, generation)
            finally:
                if token:
                    self._release(key, token)
        _latency().labels("compute").observe(time.perf_counter() - started)
        return value

    async def get_or_compute_async(
        self,
        key: str,
        fn: Callable[[], Awaitable[T]],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> T:
        """`get_or_compute` for a coroutine function (Redis calls run in a thread)."""
        started = time.perf_counter()
        tags = tuple(tags)
        found = self._l1_get(key)
        if found is not _MISS:
            _latency().labels("l1").observe(time.perf_counter() - started)
            return found  # type: ignore[no-any-return]
        found = await asyncio.to_thread(self._l2_get, key)
        if found is not _MISS:
            _latency().labels("l2").observe(time.perf_counter() - started)
            return found  # type: ignore[no-any-return]
        generation = self._generation
        versions = await asyncio.to_thread(self._tag_versions, tags)
        token = await asyncio.to_thread(self._acquire, key)
        if token is None:
            found = await asyncio.to_thread(self._wait_for, key)
            if found is not _MISS:
                return found  # type: ignore[no-any-return]
        try:
            value = await fn()
            _requests().labels("compute", "miss").inc()
            await asyncio.to_thread(self._store, key, value, ttl, versions, generation)
        finally:
            if token:
                await asyncio.to_thread(self._release, key, token)
        _latency().labels("compute").observe(time.perf_counter() - started)
        return value

    def bust(self, *tags: str) -> int:
        """Invalidate every value tagged with any of `tags`, here and in every replica;
        returns how many replicas acknowledged within ``bust_wait_ms``."""
        if not tags:
            return 0
        with self._lock:
            if self._redis is None:
                # L1 only: the local versions are the versions. With Redis, its
                # counters are (a local bump would keep this replica ahead of them).
                for tag in tags:
                    self._tagv[tag] = self._tagv.get(tag, 0) + 1
            for key in [k for k, e in self._l1.items() if set(e.tags) & set(tags)]:
                self._l1.pop(key, None)
        client = self._client()
        if client is None:
            if self._redis is not None:
                with self._lock:
                    self._pending.update(tags)
            return 0
        try:
            pipe = client.pipeline()
            for tag in tags:
                pipe.incr(self._tagv_key(tag))
            pipe.incr("ballast:bustseq")
            *versions, seq = pipe.execute()
            new = dict(zip(tags, (int(v) for v in versions), strict=True))
            with self._lock:
                for tag, version in new.items():
                    self._tagv[tag] = max(self._tagv.get(tag, 0), version)
            message = json.dumps({"seq": int(seq), "tags": new, "from": self.replica})
            receivers = int(client.publish(CHANNEL, message))
            return self._await_acks(client, int(seq), receivers)
        except Exception as exc:
            with self._lock:
                self._pending.update(tags)
            self._failed(exc, "bust")
            return 0

    def clear(self, *, namespace: str | None = None, tag: str | None = None) -> int:
        """Drop values: all of this version (or of `namespace`), or every value of `tag`
        everywhere (a bust). Returns how many L2 keys were deleted (tags: replicas told).
        """
        if tag is not None:
            return self.bust(tag)
        prefix = self.keys.prefix(namespace)
        with self._lock:
            for key in [k for k in self._l1 if k.startswith(prefix)]:
                self._l1.pop(key, None)
        client = self._client()
        if client is None:
            return 0
        deleted = 0
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=prefix + "*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(client.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(client.unlink(*batch))
        except Exception as exc:
            self._failed(exc, "clear")
        return deleted

    def stats(self) -> dict[str, Any]:
        """What the cache holds here (and in Redis when it answers)."""
        info: dict[str, Any] = {
            "l1_entries": len(self._l1),
            "l1_bytes": int(self._l1.currsize),
            "l1_max_entries": self._l1.max_entries,
            "l1_max_bytes": int(self._l1.maxsize),
            "l2": "none",
        }
        client = self._client()
        if client is not None:
            try:
                info["l2_keys"] = sum(
                    1
                    for _ in client.scan_iter(match=self.keys.prefix() + "*", count=500)
                )
                info["l2"] = "ok"
            except Exception as exc:
                self._failed(exc, "stats")
                info["l2"] = "down"
        elif self._redis is not None:
            info["l2"] = "down"
        return info

    def ping(self) -> str:
        """`ok`, `down` (Redis does not answer) or `none` (L1 only): for /readyz."""
        if self._redis is None:
            return "none"
        try:
            self._redis.ping()
        except Exception:
            return "down"
        return "ok"

    def health(self) -> dict[str, Any]:
        """The layers, cheaply (no scan; one PING): for /readyz. ``degraded`` when Redis
        is configured but does not answer (L1 and computing go on)."""
        l2 = self.ping()
        return {
            "status": "degraded" if l2 == "down" else "ok",
            "l1": "ok",
            "l2": l2,
            "l1_entries": len(self._l1),
            "l1_bytes": int(self._l1.currsize),
        }

    def start_listener(self) -> None:
        """Subscribe to busts from other replicas (idempotent; a daemon thread)."""
        if self._redis is None or self._listener is not None:
            return
        self._listener = threading.Thread(
            target=self._listen, name="ballast-cache-bust", daemon=True
        )
        self._listener.start()
        self._listening.wait(timeout=5)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None

    # ------------------------------------------------------------------ layers

    def _l1_get(self, key: str, *, count: bool = True) -> Any:
        with self._lock:
            entry = self._l1.get(key)
            if entry is None:
                if count:
                    _requests().labels("l1", "miss").inc()
                return _MISS
            fresh = entry.expires > time.monotonic() and all(
                self._tagv.get(tag, version) == version
                for tag, version in entry.tags.items()
            )
            # Without Redis's busts (or with one of ours not sent yet), a tagged value
            # may be stale: not from L1.
            trusted = (
                not entry.tags
                or self._redis is None
                or not (self._is_down() or self._pending or self._deaf())
            )
            if not fresh or not trusted:
                self._l1.pop(key, None)
                if count:
                    _requests().labels("l1", "miss").inc()
                return _MISS
        if count:
            _requests().labels("l1", "hit").inc()
        return entry.value

    def _l2_get(self, key: str, *, count: bool = True) -> Any:
        client = self._client()
        if client is None:
            return _MISS
        generation = self._generation
        try:
            raw = client.get(key)
            if raw is None:
                if count:
                    _requests().labels("l2", "miss").inc()
                return _MISS
            payload = self._opened(raw, key)
            if payload is None:
                if count:
                    _requests().labels("l2", "miss").inc()
                return _MISS
            stored = pickle.loads(payload)  # noqa: S301 - only after its HMAC matched
            tags: dict[str, int] = stored["tags"]
            current = self._read_versions(client, tags)
            if current != tags:
                if count:
                    _requests().labels("l2", "miss").inc()
                return _MISS
            ttl_ms = client.pttl(key)
        except Exception as exc:
            self._failed(exc, "get")
            return _MISS
        if count:
            _requests().labels("l2", "hit").inc()
        remaining = ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else self.ttl
        self._put_l1(key, stored["value"], len(raw), tags, remaining, generation)
        return stored["value"]

    def _store(
        self,
        key: str,
        value: Any,
        ttl: float | None,
        versions: dict[str, int],
        generation: int,
    ) -> None:
        ttl = self.ttl if ttl is None else ttl
        raw = self._sealed(pickle.dumps({"value": value, "tags": versions}, protocol=5))
        self._put_l1(key, value, len(raw), versions, ttl, generation)
        client = self._client()
        if client is None:
            return
        try:
            client.set(key, raw, px=max(1, int(ttl * 1000)))
        except Exception as exc:
            self._failed(exc, "set")

    def _put_l1(
        self,
        key: str,
        value: Any,
        size: int,
        tags: dict[str, int],
        ttl: float,
        generation: int,
    ) -> None:
        with self._lock:
            if tags and generation != self._generation:
                return  # versions read before the listener reconnected: not trusted
            if any(self._tagv.get(t, v) != v for t, v in tags.items()):
                return  # busted while it was computed: do not keep it
            for tag, version in tags.items():
                self._tagv.setdefault(tag, version)
            self._l1[key] = _Entry(value, size, dict(tags), time.monotonic() + ttl)

    # ------------------------------------------------------------------ tags

    @staticmethod
    def _tagv_key(tag: str) -> str:
        return f"ballast:tagv:{tag}"

    def _read_versions(self, client: Any, tags: Iterable[str]) -> dict[str, int]:
        names = list(tags)
        if not names:
            return {}
        values = client.mget([self._tagv_key(t) for t in names])
        return {t: int(v or 0) for t, v in zip(names, values, strict=True)}

    def _tag_versions(self, tags: tuple[str, ...]) -> dict[str, int]:
        client = self._client()
        if client is not None:
            try:
                current = self._read_versions(client, tags)
                with self._lock:
                    for tag, version in current.items():
                        self._tagv[tag] = max(self._tagv.get(tag, 0), version)
                return current
            except Exception as exc:
                self._failed(exc, "tags")
        with self._lock:
            return {t: self._tagv.get(t, 0) for t in tags}

    def _apply(self, versions: dict[str, int]) -> None:
        with self._lock:
            for tag, version in versions.items():
                self._tagv[tag] = max(self._tagv.get(tag, 0), version)
            # Also a value at another version than the bust's: after a Redis restart
            # the counters start again below what this replica has seen.
            stale = [
                k
                for k, e in self._l1.items()
                if any(
                    self._tagv.get(t, v) != v or versions.get(t, v) != v
                    for t, v in e.tags.items()
                )
            ]
            for key in stale:
                self._l1.pop(key, None)

    def _await_acks(self, client: Any, seq: int, receivers: int) -> int:
        deadline = time.monotonic() + self.bust_wait_s
        acked = 0
        while True:
            acked = int(client.get(f"ballast:bustack:{seq}") or 0)
            if acked >= receivers or time.monotonic() >= deadline:
                break
            time.sleep(0.001)
        if acked < receivers:
            log.warning("cache_bust_unacknowledged", acked=acked, replicas=receivers)
        return acked

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                assert self._redis is not None
                pubsub = self._redis.pubsub()
                pubsub.subscribe(CHANNEL)
                # Subscribed only once the server confirms: a bust published before
                # that would not reach this replica, nor count on its answer.
                deadline = time.monotonic() + 10
                while (confirm := pubsub.get_message(timeout=0.2)) is None or (
                    confirm["type"] != "subscribe"
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError("no confirmation of the bust subscription")
                # A (re)connected listener may have missed busts, and Redis may have
                # lost its tag versions: drop tagged values and what we knew of tags.
                with self._lock:
                    for key in [k for k, e in self._l1.items() if e.tags]:
                        self._l1.pop(key, None)
                    self._tagv.clear()
                    self._generation += 1
                self._subscribed = True
                self._listening.set()
                self._flush_pending()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is None or message["type"] != "message":
                        continue
                    data = json.loads(message["data"])
                    self._apply({str(k): int(v) for k, v in data["tags"].items()})
                    ack = f"ballast:bustack:{int(data['seq'])}"
                    pipe = self._redis.pipeline()
                    pipe.incr(ack)
                    pipe.expire(ack, 60)
                    pipe.execute()
                pubsub.close()
            except Exception as exc:
                # Deaf to busts from now until subscribed again: no tagged L1 answers.
                self._subscribed = False
                self._failed(exc, "listen")
                self._listening.set()  # tried: start-up does not wait any longer
                self._stop.wait(min(1.0, self.retry_redis_after_s or 1.0))

    # ------------------------------------------------------------------ locks

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            yield
        with self._lock:
            if not lock.locked():
                self._key_locks.pop(key, None)

    def _acquire(self, key: str) -> str | None:
        """A token when this process computes `key`; None when another one does.
        "" when there is no L2 to coordinate with (compute)."""
        client = self._client()
        if client is None:
            return ""
        token = uuid.uuid4().hex
        try:
            got = client.set(
                f"{key}:lock", token, nx=True, px=int(self.lock_timeout_s * 1000)
            )
        except Exception as exc:
            self._failed(exc, "lock")
            return ""
        return token if got else None

    def _release(self, key: str, token: str) -> None:
        client = self._client()
        if client is None:
            return
        try:
            client.eval(_RELEASE, 1, f"{key}:lock", token)
        except Exception as exc:
            self._failed(exc, "unlock")

    def _wait_for(self, key: str) -> Any:
        """Wait for another process's value; _MISS when its lock went without one."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.002
        while time.monotonic() < deadline:
            found = self._l2_get(key, count=False)
            if found is not _MISS:
                _requests().labels("l2", "hit").inc()
                return found
            client = self._client()
            if client is None:
                return _MISS
            try:
                if not client.exists(f"{key}:lock"):
                    return self._l2_get(key, count=False)
            except Exception as exc:
                self._failed(exc, "wait")
                return _MISS
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return _MISS

    # ------------------------------------------------------------------ failures

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _deaf(self) -> bool:
        """A listener that is not subscribed (Redis went away): busts of other
        replicas would not reach this one. A cache without a listener is never deaf."""
        return self._listener is not None and not self._subscribed

    @property
    def listening(self) -> bool:
        """Whether busts of other replicas reach this cache now."""
        return self._listener is not None and self._subscribed

    def _client(self) -> Any | None:
        if self._redis is None or self._is_down():
            return None
        if self._pending:
            self._flush_pending()
            if self._is_down():
                return None
        return self._redis

    def _flush_pending(self) -> None:
        """Send the busts that could not reach Redis (once it answers again)."""
        with self._lock:
            tags, self._pending = self._pending, set()
        if tags:
            log.info("cache_pending_busts_sent", tags=len(tags))
            self.bust(*sorted(tags))

    def _sealed(self, payload: bytes) -> bytes:
        return hmac.new(self._signing_key, payload, hashlib.sha256).digest() + payload

    def _opened(self, raw: bytes, key: str) -> bytes | None:
        """The pickled payload of an L2 entry, or None when its HMAC does not match.

        Entries are unpickled only when this process's signing key (derived from
        `security.secret_key`) made them: whoever can write to Redis must not be able
        to run code in every api and ui process through a crafted pickle."""
        mac, payload = raw[:_MAC_SIZE], raw[_MAC_SIZE:]
        expected = hmac.new(self._signing_key, payload, hashlib.sha256).digest()
        if len(raw) >= _MAC_SIZE and hmac.compare_digest(mac, expected):
            return payload
        self._forged.inc()
        log.warning(
            "cache_entry_rejected", key=key, reason="its signature does not match"
        )
        return None

    def _failed(self, exc: BaseException, doing: str) -> None:
        self._errors.inc()
        first = not self._is_down()
        self._down_until = time.monotonic() + self.retry_redis_after_s
        if first:
            log.warning(
                "cache_redis_unavailable",
                doing=doing,
                error=f"{type(exc).__name__}: {exc}",
                retry_after_s=self.retry_redis_after_s,
            )
