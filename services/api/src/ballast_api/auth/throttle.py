"""Login throttling per account and per client address, with exponential backoff.

Why `limits`: it is maintained (the limiter behind Flask-Limiter and SlowAPI), typed, and
has the same async API over an in-process memory storage and over Redis (its scripts
make a counter's increment and expiry one atomic step), which is exactly the embedded
default / production split of ARCHITECTURE.md. Its moving-window limiter counts the
failures; the backoff locks on top of it use the storage's own counters.

The rules (the decisions of issue 15):

- ``security.login_rate_per_minute`` failed logins within a minute for one username
  (from any address), or ``security.login_address_rate_per_minute`` from one client
  address (over every username), lock that account or address: the next attempt is
  refused.
- A lock lasts ``login_backoff_base_s`` and doubles with each further lock while locks
  are remembered (``login_backoff_memory_s`` after the last one), at most
  ``login_backoff_max_s``. It is never extended by attempts made while it holds, so it
  always ends: an attacker cannot lock a victim out for good.
- An account lock does not apply at addresses the account logged in from successfully
  before (``login_known_address_s``): an attacker hammering a victim's username from
  elsewhere does not lock the victim out at their usual address. An address lock
  applies to every username.
- A throttled attempt is answered 429 with ``Retry-After`` before any database or
  argon2 work: a few storage reads only. It is counted in a metric; the audit log gets
  one ``login_throttled`` row when a lock starts (not one per rejected attempt, which
  would let a flood of requests become a flood of writes).
- The address is the client's as `ClientAddressMiddleware` resolved it. A trusted
  proxy's own address (a ui pod that named no browser address) and a request without
  an address are not throttled per address: that address speaks for many users, and
  locking it would lock them all out. Such logins are still throttled per account.
- Usernames and addresses are hashed in the storage keys.

Redis is used when ``redis_url`` is configured, so every api replica shares the
counters. When Redis fails, the limiter logs ``login_limiter_degraded``, sets
``ballast_login_limiter_degraded`` to 1 and counts in process memory (per replica)
until Redis answers again (tried every ``RETRY_REDIS_AFTER_S``): logins keep working and
keep being throttled, never 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

import redis.asyncio as aioredis
from fastapi import Depends, Request
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from prometheus_client import REGISTRY, Counter, Gauge
from redis.exceptions import RedisError

from ballast_common.config import AppConfig, SecurityConfig
from ballast_common.telemetry import get_logger, get_or_create

log = get_logger(__name__)

Scope = Literal["account", "address"]
SCOPES: tuple[Scope, ...] = ("account", "address")
# After a Redis error, count in process memory this long before trying Redis again.
RETRY_REDIS_AFTER_S = 5.0
# A Redis that does not answer within this many seconds counts as down.
REDIS_TIMEOUT_S = 0.5
KEY_PREFIX = "ballast:login"
_STORAGE_ERRORS = (RedisError, StorageError, OSError, asyncio.TimeoutError)

T = TypeVar("T")


def attempts_counter() -> Counter:
    """``ballast_login_attempts_total{outcome}``: success, failed or throttled."""
    return get_or_create(
        "ballast_login_attempts_total",
        lambda: Counter(
            "ballast_login_attempts_total",
            "Login attempts by outcome (success, failed, throttled).",
            ("outcome",),
            registry=REGISTRY,
        ),
    )


def locks_counter() -> Counter:
    """``ballast_login_locks_total{scope}``: backoff locks started (account, address)."""
    return get_or_create(
        "ballast_login_locks_total",
        lambda: Counter(
            "ballast_login_locks_total",
            "Login backoff locks started, by scope (account, address).",
            ("scope",),
            registry=REGISTRY,
        ),
    )


def degraded_gauge() -> Gauge:
    """``ballast_login_limiter_degraded``: 1 while Redis failed and counting is per replica."""
    return get_or_create(
        "ballast_login_limiter_degraded",
        lambda: Gauge(
            "ballast_login_limiter_degraded",
            "1 while the login limiter counts in process memory because Redis failed.",
            registry=REGISTRY,
            multiprocess_mode="max",
        ),
    )


def fallbacks_counter() -> Counter:
    """``ballast_login_limiter_fallbacks_total``: limiter operations done in memory after a Redis error."""
    return get_or_create(
        "ballast_login_limiter_fallbacks_total",
        lambda: Counter(
            "ballast_login_limiter_fallbacks_total",
            "Login limiter checks and updates done in process memory because Redis failed.",
            registry=REGISTRY,
        ),
    )


@dataclass(frozen=True)
class Throttled:
    """An attempt refused: which lock holds and for how many more seconds."""

    scope: Scope
    retry_after_s: int


@dataclass(frozen=True)
class Lock:
    """A lock just started by a failure: for the audit row."""

    scope: Scope
    strike: int
    seconds: int


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def account_key(username: str) -> str:
    return _digest(username.strip().lower())


def address_key(address: str) -> str:
    return _digest(address)


def backoff_seconds(sec: SecurityConfig, strike: int) -> int:
    """The length of lock number `strike` (1, 2, ...): base doubled each time, capped."""
    exponent = min(max(strike, 1) - 1, 30)
    return int(min(sec.login_backoff_base_s * 2**exponent, sec.login_backoff_max_s))


class _Backend:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.window = MovingWindowRateLimiter(storage)


class LoginThrottle:
    """The limiter of one api process; shared state lives in Redis when configured."""

    def __init__(self, sec: SecurityConfig, redis_url: str | None = None) -> None:
        self.sec = sec
        self.limits = {
            "account": RateLimitItemPerMinute(sec.login_rate_per_minute),
            "address": RateLimitItemPerMinute(sec.login_address_rate_per_minute),
        }
        self.proxies = [
            ipaddress.ip_network(p, strict=False) for p in sec.trusted_proxies
        ]
        self.memory = _Backend(MemoryStorage())
        self.pool: aioredis.ConnectionPool | None = None
        self.redis: _Backend | None = None
        if redis_url:
            self.pool = aioredis.ConnectionPool.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            self.redis = _Backend(
                RedisStorage(
                    "async+redis://",
                    implementation="redispy",
                    key_prefix=KEY_PREFIX,
                    connection_pool=self.pool,  # type: ignore[arg-type]
                )
            )
        self._down_until = 0.0
        self.degraded = False
        degraded_gauge().set(0)

    @classmethod
    def from_config(cls, config: AppConfig) -> LoginThrottle:
        return cls(config.security, config.redis_url)

    @property
    def backend_name(self) -> str:
        return "redis" if self.redis is not None else "memory"

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()

    # ------------------------------------------------------------------ storage

    async def _run(self, op: Callable[[_Backend], Awaitable[T]]) -> T:
        """`op` on Redis, or in memory when there is no Redis or it just failed."""
        if self.redis is None:
            return await op(self.memory)
        if time.monotonic() >= self._down_until:
            try:
                result = await op(self.redis)
            except _STORAGE_ERRORS as exc:
                self._down_until = time.monotonic() + RETRY_REDIS_AFTER_S
                if not self.degraded:
                    self.degraded = True
                    degraded_gauge().set(1)
                    log.warning(
                        "login_limiter_degraded",
                        error=type(exc).__name__,
                        detail=str(exc)[:200],
                        retry_after_s=RETRY_REDIS_AFTER_S,
                    )
            else:
                if self.degraded:
                    self.degraded = False
                    degraded_gauge().set(0)
                    log.info("login_limiter_recovered")
                return result
        fallbacks_counter().inc()
        return await op(self.memory)

    # ------------------------------------------------------------------ rules

    def _address(self, address: str | None) -> str | None:
        """The address to throttle, or None: no address, or a trusted proxy's own."""
        if not address:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        return None if any(ip in net for net in self.proxies) else address

    @staticmethod
    def _keys(scope: Scope, ident: str) -> tuple[str, str]:
        return f"lock/{scope}/{ident}", f"strikes/{scope}/{ident}"

    async def check(self, username: str, address: str | None) -> Throttled | None:
        """The lock that refuses this attempt, or None. No database, no argon2."""
        account = account_key(username)
        real = self._address(address)
        addr = address_key(real) if real else None

        async def op(b: _Backend) -> Throttled | None:
            found: list[Throttled] = []
            pairs: list[tuple[Scope, str]] = [("account", account)]
            if addr is not None:
                pairs.insert(0, ("address", addr))
            for scope, ident in pairs:
                lock_key, _ = self._keys(scope, ident)
                if await b.storage.get(lock_key) <= 0:
                    continue
                if (
                    scope == "account"
                    and addr is not None
                    and await b.storage.get(f"known/{account}/{addr}")
                ):
                    continue
                left = await b.storage.get_expiry(lock_key) - time.time()
                found.append(Throttled(scope, max(1, math.ceil(left))))
            return max(found, key=lambda t: t.retry_after_s) if found else None

        throttled = await self._run(op)
        if throttled is not None:
            attempts_counter().labels("throttled").inc()
        return throttled

    async def failed(self, username: str, address: str | None) -> list[Lock]:
        """Count a failed login; returns the locks it started (none, usually)."""
        idents: dict[Scope, str] = {"account": account_key(username)}
        real = self._address(address)
        if real is not None:
            idents["address"] = address_key(real)

        async def op(b: _Backend) -> list[Lock]:
            started = []
            for scope in SCOPES:
                if scope not in idents:
                    continue
                ident, item = idents[scope], self.limits[scope]
                # The failure that uses up the minute's allowance starts the lock.
                if await b.window.hit(item, "fail", scope, ident):
                    stats = await b.window.get_window_stats(item, "fail", scope, ident)
                    if stats.remaining > 0:
                        continue
                lock_key, strikes_key = self._keys(scope, ident)
                if await b.storage.get(lock_key) > 0:
                    continue  # a lock holds already (a known address failing on)
                # Remembered from the last lock on: read, then set again with a new expiry.
                strike = await b.storage.get(strikes_key) + 1
                await b.storage.clear(strikes_key)
                await b.storage.incr(
                    strikes_key, self.sec.login_backoff_memory_s, amount=strike
                )
                seconds = backoff_seconds(self.sec, strike)
                await b.storage.clear(lock_key)
                await b.storage.incr(lock_key, seconds, amount=strike)
                # The next lock is earned by a fresh window of failures after this one.
                await b.window.clear(item, "fail", scope, ident)
                started.append(Lock(scope, strike, seconds))
            return started

        attempts_counter().labels("failed").inc()
        locks = await self._run(op)
        for lock in locks:
            locks_counter().labels(lock.scope).inc()
            log.warning(
                "login_lock_started",
                scope=lock.scope,
                strike=lock.strike,
                seconds=lock.seconds,
            )
        return locks

    async def succeeded(self, username: str, address: str | None) -> None:
        """Remember the address as known to the account (account locks spare it)."""
        attempts_counter().labels("success").inc()
        real = self._address(address)
        if self.sec.login_known_address_s <= 0 or real is None:
            return
        key = f"known/{account_key(username)}/{address_key(real)}"

        async def op(b: _Backend) -> None:
            await b.storage.clear(key)
            await b.storage.incr(key, self.sec.login_known_address_s)

        await self._run(op)


def get_login_throttle(request: Request) -> LoginThrottle:
    """The app's login limiter, made on first use (Redis when configured)."""
    state = request.app.state
    throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
    if throttle is None:
        throttle = state.login_throttle = LoginThrottle.from_config(state.config)
    return throttle


async def close_login_throttle(app: object) -> None:
    """Release the limiter's Redis connections (at the api's shutdown)."""
    state = getattr(app, "state", None)
    throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
    if throttle is not None:
        state.login_throttle = None  # type: ignore[union-attr]
        await throttle.aclose()


ThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]
