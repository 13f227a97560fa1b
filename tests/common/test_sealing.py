"""Sealed secrets (AES-256-GCM, HKDF keys): what opens, and everything that must not."""

from __future__ import annotations

import base64

import pytest

from ballast_common.config import AppConfig
from ballast_common.sealing import (
    PREFIX,
    SealError,
    derive_key,
    is_sealed,
    seal,
    sealing_key,
    unseal,
)

KEY = derive_key(b"0123456789abcdef-secret", "tests")


@pytest.mark.parametrize("plain", ["whsec_abc", "", "ü\x00" * 500, "x" * 100_000])
def test_a_sealed_value_opens_with_its_key_and_context(plain: str) -> None:
    sealed = seal(plain, KEY, context="row-1")
    assert is_sealed(sealed)
    assert unseal(sealed, KEY, context="row-1") == plain
    if plain:
        assert plain not in sealed
    # A fresh nonce every time: the same secret never seals the same way twice.
    assert seal(plain, KEY, context="row-1") != sealed


def test_another_key_context_or_purpose_does_not_open_it() -> None:
    sealed = seal("whsec_abc", KEY, context="row-1")
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, KEY, context="row-2")
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, derive_key(b"0123456789abcdef-secret", "other"), context="row-1")
    with pytest.raises(SealError, match="does not open"):
        unseal(sealed, derive_key(b"another-secret-0123", "tests"), context="row-1")


def test_every_changed_byte_is_noticed() -> None:
    sealed = seal("whsec_abc", KEY, context="row-1")
    raw = bytearray(base64.urlsafe_b64decode(sealed[len(PREFIX) :]))
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        bad = PREFIX + base64.urlsafe_b64encode(bytes(flipped)).decode()
        with pytest.raises(SealError):
            unseal(bad, KEY, context="row-1")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "whsec_abc",
        PREFIX,
        PREFIX + "!!!not base64!!!",
        PREFIX + "AAAA",
        PREFIX + "\x00" * 40,
        PREFIX + "é" * 40,
        "sealed:v2:" + "A" * 60,
    ],
)
def test_garbage_is_a_seal_error_not_a_crash(garbage: str) -> None:
    with pytest.raises(SealError):
        unseal(garbage, KEY, context="row-1")


def test_keys_come_from_the_configured_secret_and_need_one() -> None:
    a = AppConfig(security={"secret_key": "a" * 32})
    b = AppConfig(security={"secret_key": "b" * 32})
    assert sealing_key(a, "p") != sealing_key(b, "p")
    assert sealing_key(a, "p") != sealing_key(a, "q")
    assert sealing_key(a, "p") == sealing_key(a, "p")
    assert len(sealing_key(a, "p")) == 32
    with pytest.raises(ValueError, match="16 bytes"):
        derive_key(b"short", "p")
