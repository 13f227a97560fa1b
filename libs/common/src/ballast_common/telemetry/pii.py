"""PII and secret masking for logs, errors and tracked events.

Masking is deliberately pattern based and conservative: a false positive costs a
slightly less useful log line, a false negative leaks personal data into a log
store that many people can read. Three things are explicitly *not* masked because
every log line and most ids contain them: ISO-8601 timestamps, dashed UUIDs and
values under identifier keys (``id``, ``*_id``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

MASK = "***"

# Substrings of normalised key names whose values are replaced wholesale.
_SENSITIVE_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "session",
    "credential",
    "private_key",
)
_EMAIL_KEY_PARTS = ("email", "e_mail")
_PHONE_KEY_PARTS = ("phone", "mobile", "msisdn")

# Beyond this nesting depth a value is masked wholesale: it protects the logger
# against self-referential structures and is far deeper than any sane payload.
_MAX_DEPTH = 32


class _Kind(Enum):
    PLAIN = "plain"
    SENSITIVE = "sensitive"
    EMAIL = "email"
    PHONE = "phone"
    IDENTIFIER = "identifier"


_CAMEL_BOUNDARY_RE = re.compile(r"([a-z0-9])([A-Z])")
_NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")

# scheme://user:password@host -> scheme://user:***@host (DSNs in driver errors), also
# with no user (redis://:password@host).
_URL_CREDENTIALS_RE = re.compile(
    r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)[^@/?#\s]+(?=@)"
)
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
# Requiring 8+ characters keeps prose such as "bearer of bad news" intact.
_BEARER_RE = re.compile(r"\b([Bb]earer)\s+[A-Za-z0-9\-._~+/]{8,}=*")
# key=value / key: value / "key": "value" in free text; the key decides (see
# is_sensitive_key), so it is matched generically and checked in the callback.
_KEY_VALUE_RE = re.compile(
    r"""(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>["']?\s*[=:]\s*)"""
    r"""(?P<value>(?:[Bb]earer|[Bb]asic|[Tt]oken)\s+[^\s,;&'"]+|"[^"]*"|'[^']*'|[^\s,;&'")}\]]+)"""
)
# Local part: common address characters, then any RFC 5322 atext character right
# before the "@". Quotes, "=" and "/" in the middle would otherwise glue the
# surrounding text (email='jane@..., ?user=jane@...) onto the address; a local part
# that contains them is still masked from its last such character on, which is
# enough to break the address. The domain needs at least one dot.
_EMAIL_RE = re.compile(
    r"(?P<local>[A-Za-z0-9._%+*\-]*[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-])@"
    r"(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)"
)
# One scan for the remaining rules. Alternatives are tried in order at each
# position, so the protected shapes (UUID, ISO timestamp) win over the phone and
# token rules that would otherwise eat their digits.
_SCAN_RE = re.compile(
    r"""
    (?P<uuid>(?<![0-9A-Za-z])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Za-z]))
    | (?P<timestamp>(?<!\d)\d{4}-\d{2}-\d{2}
        (?:[T\ ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+\-]\d{2}:?\d{2})?)?(?![\d:]))
    | (?P<phone>(?<![\w+\-])(?<!\d[.,:/])
        (?:\+\d{1,3}[\ \-]?(?:\(\d{1,4}\)[\ \-]?)?\d[\d\ \-]{4,}\d       # +49 30 1234567, +1 (555) 123-4567
          | \(\d{2,5}\)[\ \-]?\d[\d\ \-]{3,}\d                           # (555) 123-4567
          | \d{2,5}[\ \-]\d[\d\ \-]{2,}\d                                # 030 1234567, 555-123-4567
          | 0\d{6,14}                                                    # 01711234567 (trunk prefix)
        )(?![\w:/]|[.,]\d))
    | (?P<token>(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{24,}(?![A-Za-z0-9_\-]))
    """,
    re.VERBOSE,
)
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_DIGIT_RE = re.compile(r"\d")


def _normalize_key(key: str) -> str:
    # userId -> user_id, X-Api-Key -> x_api_key, APIKey -> apikey.
    return _NON_ALNUM_RE.sub("_", _CAMEL_BOUNDARY_RE.sub(r"\1_\2", key).lower())


def is_sensitive_key(key: str) -> bool:
    """Tell whether a key's value must never be logged.

    Args:
        key: A mapping key, header name or form field name, in any case or
            separator style (``access_token``, ``X-Api-Key``, ``clientSecret``).

    Returns:
        ``True`` if the normalised name contains a sensitive word.
    """
    normalized = _normalize_key(key)
    return any(part in normalized for part in _SENSITIVE_KEY_PARTS)


def _key_kind(key: object) -> _Kind:
    if not isinstance(key, str):
        return _Kind.PLAIN
    if is_sensitive_key(key):
        return _Kind.SENSITIVE
    normalized = _normalize_key(key).strip("_")
    if any(part in normalized for part in _EMAIL_KEY_PARTS):
        return _Kind.EMAIL
    if any(part in normalized for part in _PHONE_KEY_PARTS):
        return _Kind.PHONE
    if normalized in ("id", "ids") or normalized.endswith(("_id", "_ids")):
        return _Kind.IDENTIFIER
    return _Kind.PLAIN


def _mask_email_match(match: re.Match[str]) -> str:
    local = match.group("local")
    if not local.strip("*"):
        # Already masked (j***@x.org, user:***@host): masking is idempotent.
        return match.group(0)
    return f"{local[0]}{MASK}@{match.group('domain')}"


def _mask_key_value_match(match: re.Match[str]) -> str:
    if not is_sensitive_key(match.group("key")):
        return match.group(0)
    return f"{match.group('key')}{match.group('sep')}{MASK}"


def _mask_phone(text: str) -> str:
    digits = _DIGIT_RE.findall(text)
    if MASK in text and len(digits) <= 2:
        return text  # already masked ("***67"): masking is idempotent
    if len(digits) < 3:
        return MASK if text else text
    return MASK + "".join(digits[-2:])


_LOWER_RUN_RE = re.compile(r"[a-z]+")
_UPPER_RUN_RE = re.compile(r"[A-Z]+")


def _looks_like_token(text: str) -> bool:
    has_digit = any(c.isdigit() for c in text)
    if _HEX_RE.fullmatch(text):
        return has_digit
    # Random base64url mixes digits and both cases; snake_case identifiers and
    # metric names (ballast_http_requests_total) do not.
    if not (any(c.isupper() for c in text) and any(c.islower() for c in text)):
        return False
    if has_digit:
        return True
    # About 1 in 1,500 random 43-character tokens has no digit. A long one still counts
    # when it reads like random text rather than a name: short lowercase runs (about 2
    # letters; the words of a CamelCase or snake_case name run 4 and more), capitals side
    # by side (about 10 pairs in 43 characters; names have them only in acronyms) or
    # many capitals (about 45 %). Measured on 200,000 random digitless tokens: 0.04 %
    # slip through.
    if len(text) < 32:
        return False
    lower = _LOWER_RUN_RE.findall(text)
    upper = _UPPER_RUN_RE.findall(text)
    upper_pairs = sum(len(run) - 1 for run in upper)
    return (
        sum(map(len, lower)) / len(lower) < 3.3
        or upper_pairs >= 3
        or sum(map(len, upper)) >= 0.3 * len(text)
    )


def _scan_match(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.group("phone") is not None:
        if 7 <= len(_DIGIT_RE.findall(text)) <= 15:
            return _mask_phone(text)
        return text
    if match.group("token") is not None and _looks_like_token(text):
        return MASK
    return text


def mask_value(value: str) -> str:
    """Mask PII and secrets inside free text.

    Masks e-mail addresses (``j***@example.com``), phone numbers with 7 to 15
    digits (``***67``), bearer tokens and JWTs, long hex or base64url tokens
    (24+ characters), credentials in URLs and ``password=...``-style pairs whose
    key is sensitive (see :func:`is_sensitive_key`). ISO timestamps and dashed
    UUIDs are left alone. Masking is idempotent.

    Args:
        value: Any text: a log message, an exception message, a traceback.

    Returns:
        The masked text.
    """
    if not value:
        return value
    masked = _URL_CREDENTIALS_RE.sub(r"\1" + MASK, value)
    masked = _JWT_RE.sub(MASK, masked)
    masked = _BEARER_RE.sub(r"\1 " + MASK, masked)
    masked = _KEY_VALUE_RE.sub(_mask_key_value_match, masked)
    masked = _EMAIL_RE.sub(_mask_email_match, masked)
    return _SCAN_RE.sub(_scan_match, masked)


def _mask_str(value: str, kind: _Kind) -> str:
    if kind is _Kind.SENSITIVE:
        return MASK
    if kind is _Kind.IDENTIFIER:
        # Ids are often long digit or hex strings; only an e-mail used as an id
        # is personal data.
        return _EMAIL_RE.sub(_mask_email_match, value)
    masked = mask_value(value)
    if kind is _Kind.EMAIL and masked == value and value and MASK not in value:
        # Under an e-mail key even something that is not a full address (a
        # local part, a typo) is personal data.
        return value[0] + MASK
    if kind is _Kind.PHONE:
        return _mask_phone(value)
    return masked


def _mask(obj: Any, kind: _Kind, depth: int) -> Any:
    if kind is _Kind.SENSITIVE or depth > _MAX_DEPTH:
        return MASK
    if isinstance(obj, str):
        return _mask_str(obj, kind)
    if isinstance(obj, Mapping):
        return {
            (mask_value(k) if isinstance(k, str) else k): _mask(
                v, _key_kind(k), depth + 1
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple | set | frozenset):
        items = [_mask(item, kind, depth + 1) for item in obj]
        if isinstance(obj, list):
            return items
        if isinstance(obj, tuple):
            return tuple(items)
        return frozenset(items) if isinstance(obj, frozenset) else set(items)
    if kind is _Kind.PHONE and isinstance(obj, int) and not isinstance(obj, bool):
        return _mask_phone(str(obj))
    # Numbers, booleans, None, datetimes...: nothing to mask. Plain integers are
    # never treated as phone numbers outside phone keys (they are counts and ids).
    return obj


def mask_data(obj: Any) -> Any:
    """Recursively mask PII and secrets in a structure.

    Rules by key (case and separator insensitive): values under sensitive keys
    (``password``, ``access_token``, ``X-Api-Key``, ``session``... see
    :func:`is_sensitive_key`) become ``"***"`` whatever their type; values under
    e-mail and phone keys are always masked; string values under ``id`` and
    ``*_id`` keys are only checked for e-mail addresses. Every other string (and
    every string key) goes through :func:`mask_value`. Mappings come back as
    ``dict``, lists, tuples and sets keep their type; other objects are returned
    unchanged.

    Args:
        obj: A JSON-like value: mappings, lists, tuples, sets, strings, scalars.

    Returns:
        A masked copy; the input is never modified.
    """
    return _mask(obj, _Kind.PLAIN, 0)
