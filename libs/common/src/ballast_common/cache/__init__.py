"""The cache: `get_or_compute(key, fn, ttl, tags=...)` over an in-process L1 and a shared
Redis L2, with keys from `CacheKeys` and busting by tag across replicas (see `core`).

One `Cache` per process: `init_app()` calls `init_cache(config)` at start-up (the api's
lifespan, every worker process, the UI through `ballast_ui.cache`; the first
`get_cache()` builds it from `load_config()` otherwise). L2 is `cache.redis_url`, else
`redis_url`; with neither (the embedded default) the cache is L1 only, and a write busts
only the cache of the process that made it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ballast_common.cache.core import CHANNEL, Cache
from ballast_common.cache.keys import CacheKeys, params_hash
from ballast_common.config import AppConfig, load_config

T = TypeVar("T")
_lock = threading.Lock()
_cache: Cache | None = None


def signing_key(config: AppConfig) -> bytes:
    """The key L2 entries are signed with: derived from `security.secret_key`, so
    every api and ui replica of a deployment shares it and nothing else knows it."""
    secret = config.security.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"ballast cache l2 entries v1", hashlib.sha256).digest()


def build_cache(config: AppConfig, *, listen: bool = True) -> Cache:
    """A new cache from the configuration; with `listen` (a serving process) it takes
    busts from other replicas (a listener thread when L2 exists)."""
    from ballast_common import __version__

    c = config.cache
    cache = Cache(
        CacheKeys(version=__version__),
        redis_url=c.redis_url or config.redis_url,
        ttl=c.ttl,
        max_entries=c.max_entries,
        max_bytes=c.max_bytes,
        lock_timeout_s=c.lock_timeout_s,
        bust_wait_ms=c.bust_wait_ms,
        retry_redis_after_s=c.retry_redis_after_s,
        signing_key=signing_key(config),
    )
    if listen:
        cache.start_listener()
    return cache


def init_cache(config: AppConfig, *, listen: bool = True) -> Cache:
    """Make the process's cache from `config` (replacing an earlier one).

    Args:
        config: `cache.*` and `redis_url` are read.
        listen: take busts from other replicas (a serving process must; a one-off CLI
            command that only writes need not).
    """
    global _cache
    with _lock:
        if _cache is not None:
            _cache.close()
        _cache = build_cache(config, listen=listen)
        return _cache


def reset_cache() -> None:
    """Close and forget the process's cache (shutdown; tests)."""
    global _cache
    with _lock:
        if _cache is not None:
            _cache.close()
        _cache = None


def get_cache() -> Cache:
    global _cache
    with _lock:
        if _cache is None:
            _cache = build_cache(load_config())
        return _cache


def current_cache() -> Cache | None:
    """The process's cache if one was made (writes bust through it)."""
    return _cache


def get_or_compute(
    key: str, fn: Callable[[], T], ttl: float | None = None, *, tags: Iterable[str] = ()
) -> T:
    """The cached value of `key`, else `fn()` computed once and cached for `ttl` s."""
    return get_cache().get_or_compute(key, fn, ttl, tags=tags)


async def get_or_compute_async(
    key: str,
    fn: Callable[[], Awaitable[T]],
    ttl: float | None = None,
    *,
    tags: Iterable[str] = (),
) -> T:
    return await get_cache().get_or_compute_async(key, fn, ttl, tags=tags)


def cache_keys() -> CacheKeys:
    return get_cache().keys


__all__ = [
    "CHANNEL",
    "Cache",
    "CacheKeys",
    "build_cache",
    "cache_keys",
    "current_cache",
    "get_cache",
    "get_or_compute",
    "get_or_compute_async",
    "init_cache",
    "params_hash",
    "reset_cache",
]
