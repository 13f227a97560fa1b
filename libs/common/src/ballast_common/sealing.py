"""Secrets the database must hold but must not reveal: sealed with AES-256-GCM.

A webhook subscription's signing secret has to be read back to sign each delivery, so
it cannot be hashed like a password. It is stored sealed instead: AES-256-GCM under a
key derived (HKDF-SHA256) from ``security.secret_key`` and the secret's *purpose*, with
the row it belongs to as associated data. Whoever reads the database (a dump, a backup,
a replica) learns nothing of the secret; whoever can write to it cannot move a sealed
value to another row or purpose, nor change it unnoticed.

A sealed value is ``sealed:v1:`` + base64url(12-byte nonce + ciphertext + 16-byte tag).
Changing ``security.secret_key`` makes sealed values unreadable (`SealError`): the
secrets must then be issued again (for webhooks: a new subscription).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ballast_common.config import AppConfig

PREFIX = "sealed:v1:"
_NONCE = 12


class SealError(ValueError):
    """A sealed value that cannot be opened: another key, another row, or tampered."""


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose from a secret of at least 16 bytes."""
    if len(secret) < 16:
        raise ValueError("a sealing secret must have at least 16 bytes")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"ballast sealing v1: " + purpose.encode("utf-8"),
    ).derive(secret)


def sealing_key(config: AppConfig, purpose: str) -> bytes:
    """The key for `purpose`, derived from ``security.secret_key``."""
    return derive_key(
        config.security.secret_key.get_secret_value().encode("utf-8"), purpose
    )


def seal(plaintext: str, key: bytes, *, context: str) -> str:
    """`plaintext` sealed under `key`, bound to `context` (e.g. the row's id)."""
    nonce = os.urandom(_NONCE)
    box = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), context.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + box).decode("ascii")


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def unseal(sealed: str, key: bytes, *, context: str) -> str:
    """The plaintext of `sealed`.

    Raises:
        SealError: not a sealed value, sealed under another key or context, or changed.
    """
    if not is_sealed(sealed):
        raise SealError("not a sealed value")
    try:
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :].encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SealError("a sealed value that is not base64") from None
    if len(raw) < _NONCE + 16:
        raise SealError("a sealed value too short to hold anything")
    try:
        plain = AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], context.encode())
    except InvalidTag:
        raise SealError(
            "a sealed value that does not open with this key and context "
            "(security.secret_key changed, or the value was altered or moved)"
        ) from None
    return plain.decode("utf-8")
