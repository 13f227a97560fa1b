"""Password hashing, opaque tokens and role-based access control."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from types import MappingProxyType

from argon2.exceptions import Argon2Error
from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher

# argon2id with argon2-cffi's defaults (RFC 9106 "second recommended" profile).
# Ref: https://frankie567.github.io/pwdlib/guide/
_hasher = Argon2Hasher()
_password_hash = PasswordHash((_hasher,))

_dummy_hash: str | None = None
_dummy_lock = threading.Lock()


def _get_dummy_hash() -> str:
    # Computed lazily (an argon2 hash costs tens of milliseconds; imports must not).
    global _dummy_hash
    with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = _password_hash.hash(secrets.token_urlsafe(16))
        return _dummy_hash


def hash_password(password: str) -> str:
    """Hash a password with argon2id.

    Args:
        password: The plain-text password.

    Returns:
        The encoded hash (``$argon2id$v=19$m=...``), salt included.
    """
    return _password_hash.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Check a password against a stored hash; never raises.

    A missing or malformed hash returns ``False`` after verifying against a dummy
    hash, so unknown users and broken rows take as long as a wrong password and
    cannot be told apart by timing.

    Args:
        password: The plain-text password.
        hashed: The stored hash, or ``None`` for a user without a password.

    Returns:
        ``True`` only if the password matches a well-formed hash.
    """
    try:
        if hashed and _hasher.identify(hashed):
            return _password_hash.verify(password, hashed)
    except (PwdlibError, Argon2Error, ValueError, TypeError):
        return False
    _password_hash.verify(password, _get_dummy_hash())
    return False


# argon2 costs tens of milliseconds of CPU on purpose; async code hashes and verifies in
# a small pool of its own so the event loop keeps answering (argon2-cffi releases the GIL)
# and a burst of logins queues here instead of taking every thread of the default pool.
DEFAULT_HASH_WORKERS = 2
_hash_pool: ThreadPoolExecutor | None = None
_hash_workers = DEFAULT_HASH_WORKERS
_pool_lock = threading.Lock()


def configure_password_hashing(workers: int) -> None:
    """Set how many threads hash and verify passwords for the async helpers.

    Args:
        workers: Pool size, at least 1 (``security.password_hash_workers``).
    """
    global _hash_pool, _hash_workers
    if workers < 1:
        raise ValueError("password hashing needs at least one worker")
    with _pool_lock:
        if workers == _hash_workers:
            return
        old, _hash_pool, _hash_workers = _hash_pool, None, workers
    if old is not None:
        old.shutdown(wait=False)


# Nice value of the hashing threads (and of argon2's lane threads, which inherit it).
HASH_THREAD_NICENESS = 10


def _lower_priority() -> None:
    # On a busy CPU the scheduler then lets the event loop thread run first whenever it
    # has work: a burst of logins slows other logins, not every request. Linux sets
    # niceness per thread; elsewhere this is a no-op.
    if hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(
                os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS
            )


def _pool() -> ThreadPoolExecutor:
    global _hash_pool
    with _pool_lock:
        if _hash_pool is None:
            _hash_pool = ThreadPoolExecutor(
                max_workers=_hash_workers,
                thread_name_prefix="ballast-argon2",
                initializer=_lower_priority,
            )
        return _hash_pool


async def ahash_password(password: str) -> str:
    """:func:`hash_password` in the bounded hashing pool (never on the event loop)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), hash_password, password)


async def averify_password(password: str, hashed: str | None) -> bool:
    """:func:`verify_password` in the bounded hashing pool (never on the event loop)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), verify_password, password, hashed)


def needs_rehash(hashed: str) -> bool:
    """Tell whether a stored hash should be replaced after a successful login.

    Args:
        hashed: The stored hash.

    Returns:
        ``True`` if the hash is not argon2 or uses weaker parameters than the
        current ones (and for malformed hashes).
    """
    try:
        if not _hasher.identify(hashed):
            return True
        return _hasher.check_needs_rehash(hashed)
    except (PwdlibError, Argon2Error, ValueError, TypeError):
        return True


def new_token() -> str:
    """Return a new opaque token (256 bits, URL-safe base64, 43 characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str, pepper: str) -> str:
    """Hash an opaque token for storage and lookup.

    Tokens are high-entropy, so a keyed fast hash suffices (no argon2): the
    database stores only ``HMAC-SHA256(pepper, token)``, and a leaked table is
    useless without the pepper, which lives in a secret, not in the database.

    Args:
        token: The token as given to the client.
        pepper: The server-side secret key.

    Returns:
        64 lowercase hex characters.

    Raises:
        ValueError: If ``pepper`` is empty.
    """
    if not pepper:
        raise ValueError("hash_token needs a non-empty pepper")
    return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()


def verify_token(token: str, pepper: str, token_hash: str) -> bool:
    """Compare a token with a stored :func:`hash_token` value in constant time.

    Args:
        token: The token presented by the client.
        pepper: The server-side secret key.
        token_hash: The stored hash.

    Returns:
        ``True`` if they match.
    """
    return hmac.compare_digest(hash_token(token, pepper), token_hash)


def nonce_digest(nonce: str) -> str:
    """The lookup key of a one-time nonce: SHA-256, 64 lowercase hex characters."""
    return hashlib.sha256(nonce.encode()).hexdigest()


class Role(StrEnum):
    """Built-in roles, from least to most privileged."""

    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"


class Permission(StrEnum):
    """Permissions checked by the api (``resource:action``)."""

    PROJECTS_READ = "projects:read"
    PROJECTS_WRITE = "projects:write"
    PROJECTS_DELETE = "projects:delete"
    # Every project, whoever owns it or shares it (see ballast_api.policy).
    PROJECTS_ADMIN = "projects:admin"
    DRAFTS_READ = "drafts:read"
    DRAFTS_WRITE = "drafts:write"
    FORMS_READ = "forms:read"
    FORMS_WRITE = "forms:write"
    AUDIT_READ = "audit:read"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    EVENTS_WRITE = "events:write"
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    JOBS_ADMIN = "jobs:admin"
    DATASETS_READ = "datasets:read"
    DATASETS_WRITE = "datasets:write"
    OPS_READ = "ops:read"
    BACKUPS_ADMIN = "backups:admin"
    WEBHOOKS_ADMIN = "webhooks:admin"


# These sets say which actions a role may attempt at all; on which resources is decided
# by the api's policy (ballast_api.policy: owner, project members, public projects).
_VIEWER = frozenset(
    {
        Permission.PROJECTS_READ,
        Permission.FORMS_READ,
        Permission.DRAFTS_READ,
        # Drafts are personal: whatever a viewer types (e.g. Settings) is kept too.
        Permission.DRAFTS_WRITE,
        Permission.EVENTS_WRITE,
        Permission.JOBS_READ,
        Permission.DATASETS_READ,
    }
)
_EDITOR = _VIEWER | {
    Permission.PROJECTS_WRITE,
    Permission.FORMS_WRITE,
    Permission.DRAFTS_WRITE,
    Permission.JOBS_WRITE,
    Permission.DATASETS_WRITE,
}

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.VIEWER: _VIEWER,
        Role.EDITOR: _EDITOR,
        Role.ADMIN: frozenset(Permission),
    }
)


def permissions_for(roles: Iterable[str]) -> frozenset[Permission]:
    """Return the union of the permissions of ``roles``.

    Args:
        roles: Role names (``Role`` members or plain strings, case-insensitive);
            unknown names are ignored, so a role removed from the code cannot
            grant anything.

    Returns:
        The granted permissions.
    """
    granted: set[Permission] = set()
    for name in roles:
        try:
            role = Role(str(name).strip().lower())
        except ValueError:
            continue
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def has_permission(roles: Iterable[str], perm: Permission | str) -> bool:
    """Tell whether any of ``roles`` grants ``perm``.

    Args:
        roles: Role names, as for :func:`permissions_for`.
        perm: A :class:`Permission` or its string value (``"projects:write"``).

    Returns:
        ``True`` if granted; ``False`` for unknown permissions.
    """
    try:
        permission = Permission(perm)
    except ValueError:
        return False
    return permission in permissions_for(roles)
