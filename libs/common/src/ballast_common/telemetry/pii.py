"""PII and secret masking for logs, errors and tracked events.

Masking is deliberately pattern based and conservative: a false positive costs a
slightly less useful log line, a false negative leaks personal data into a log
store that many people can read. Three things are explicitly *not* masked because
every log line and most ids contain them: ISO-8601 timestamps, dashed UUIDs and
values under identifier keys (``id``, ``*_id``).

Checksums keep the costly false positives away where a shape alone is not enough:
a card number must pass the Luhn check and an IBAN its mod-97 check, so an order
number or a SKU of the same length stays readable.

This is for logs. Data an authorised reader asks for (the audit trail) is shown as
written; only secrets are withheld there (:func:`redact_secrets`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any
from urllib.parse import unquote_plus

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
# "%40" is an URL-encoded "@" (alice%40example.com in a query string).
_EMAIL_RE = re.compile(
    r"(?P<local>[A-Za-z0-9._%+*\-]*[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-])(?P<at>@|%40)"
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

# Payment card numbers: 13 to 19 digits, in one run or in groups (4-4-4-4, 4-6-5,
# 4-4-4-4-3) split by one kind of separator, starting with 2-6 (Mastercard, Amex,
# Diners, JCB, Visa, Discover, UnionPay, Maestro). Epoch timestamps start with 1 and
# so never look like a card. The Luhn check (in the callback) decides.
_CARD_RE = re.compile(
    r"""
    (?<![\w\-+])(?<!\d[.,])
    (?:[2-6]\d{12,18}
      | [2-6]\d{3}(?P<sep>[\ \-])\d{3,6}(?:(?P=sep)\d{3,6}){1,3})
    (?![\w]|[\ \-.,]\d)
    """,
    re.VERBOSE,
)
# IBAN: country code, check digits, then up to 30 letters and digits, compact or in
# groups of four split by single spaces. The mod-97 check (in the callback) decides.
_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:\ ?[A-Za-z0-9]{4}){2,7}(?:\ ?[A-Za-z0-9]{1,3})?"
    r"(?![A-Za-z0-9])"
)
# PostgreSQL quotes the offending values in some error messages; the message is kept,
# the values go.
_DB_KEY_DETAIL_RE = re.compile(
    r"(?P<head>\bKey \([^)\n]*\)=\().*?(?=\) already exists|\) is not present|"
    r"\) conflicts with|\) is still referenced|\)\.?\s*$)",
    re.MULTILINE,
)
_DB_ROW_DETAIL_RE = re.compile(r"(?P<head>\bFailing row contains )\(.*\)")
_DB_QUOTED_VALUE_RE = re.compile(
    r"(?P<head>\b(?:invalid input (?:syntax|value) for [^:\n]{1,80}"
    r"|(?:field )?value out of range)): \"(?:[^\"\n\\]|\\.)*\""
)
# SQL statement parameters in SQLAlchemy's own text, for engines built without
# hide_parameters: "[parameters: (...)]" in exception text, and the echo line that
# follows each statement ("[generated in 0.0001s] ('alice', ...)").
_SQL_PARAMETERS_RE = re.compile(r"(?P<head>\[parameters: ).*\]")
_SQL_ECHO_PARAMETERS_RE = re.compile(
    r"^(?P<head>\[(?:generated in|cached since|raw sql|no key|caching disabled"
    r"|insertmanyvalues|dialect \S+ does not support caching)[^\]\n]*\]) .+$",
    re.MULTILINE,
)
# Short words without digits, spaces, dots or separators ("event", "duration_ms",
# "GET") cannot hold anything the rules below mask: every rule needs a digit, an "@",
# a separator or 24+ characters.
_NOTHING_TO_MASK_RE = re.compile(r"[A-Za-z_\-]{1,23}")
# Percent escapes (%40, %20) or plus-joined digits (4111+1111): text that may be URL
# encoded, worth a second look once decoded.
_URL_ENCODED_RE = re.compile(r"%[0-9A-Fa-f]{2}|\d\+\d")


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
    return f"{local[0]}{MASK}{match.group('at')}{match.group('domain')}"


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_valid(digits)


def _mask_card_match(match: re.Match[str]) -> str:
    digits = "".join(_DIGIT_RE.findall(match.group(0)))
    if not _is_card_number(digits):
        return match.group(0)
    return MASK + digits[-4:]


def _iban_valid(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    # A=10 ... Z=35; int(c, 36) maps digits to themselves and letters exactly so.
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _mask_iban_match(match: re.Match[str]) -> str:
    compact = match.group(0).replace(" ", "")
    if not _iban_valid(compact.upper()):
        return match.group(0)
    return compact[:2] + MASK + compact[-4:]


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

    Masks e-mail addresses (``j***@example.com``, also URL-encoded as
    ``j***%40example.com``), payment card numbers that pass the Luhn check
    (``***1111``), IBANs that pass the mod-97 check (``DE***3000``), phone numbers
    with 7 to 15 digits (``***67``), bearer tokens and JWTs, long hex or base64url
    tokens (24+ characters), credentials in URLs, ``password=...``-style pairs
    whose key is sensitive (see :func:`is_sensitive_key`), SQL statement
    parameters in SQLAlchemy's text (``[parameters: ***]``) and the values
    PostgreSQL quotes in its error messages (``Key (email)=(***)``). URL-encoded text (a path
    or query string) is also checked once decoded; when that finds something, the
    decoded, masked text is returned. ISO timestamps and dashed UUIDs are left
    alone. Masking is idempotent.

    Args:
        value: Any text: a log message, an exception message, a traceback.

    Returns:
        The masked text.
    """
    if not value:
        return value
    masked = _mask_text(value)
    if _URL_ENCODED_RE.search(masked):
        decoded = unquote_plus(masked)
        if decoded != masked:
            remasked = _mask_text(decoded)
            if remasked != decoded:
                return remasked
    return masked


def _mask_text(value: str) -> str:
    if _NOTHING_TO_MASK_RE.fullmatch(value):
        return value
    masked = value
    # The cheap substring checks skip rules that cannot match: most log fields are
    # short names, ids and numbers, and this runs on every field of every line.
    if "[" in masked:
        masked = _SQL_PARAMETERS_RE.sub(r"\g<head>" + MASK + "]", masked)
        masked = _SQL_ECHO_PARAMETERS_RE.sub(r"\g<head> " + MASK, masked)
    masked = _URL_CREDENTIALS_RE.sub(r"\1" + MASK, masked)
    masked = _JWT_RE.sub(MASK, masked)
    masked = _BEARER_RE.sub(r"\1 " + MASK, masked)
    masked = _KEY_VALUE_RE.sub(_mask_key_value_match, masked)
    if "Key (" in masked:
        masked = _DB_KEY_DETAIL_RE.sub(r"\g<head>" + MASK, masked)
    if "Failing row" in masked:
        masked = _DB_ROW_DETAIL_RE.sub(r"\g<head>(" + MASK + ")", masked)
    if "invalid input" in masked or "out of range" in masked:
        masked = _DB_QUOTED_VALUE_RE.sub(r'\g<head>: "' + MASK + '"', masked)
    masked = _EMAIL_RE.sub(_mask_email_match, masked)
    if _DIGIT_RE.search(masked):
        masked = _IBAN_RE.sub(_mask_iban_match, masked)
        masked = _CARD_RE.sub(_mask_card_match, masked)
    return _SCAN_RE.sub(_scan_match, masked)


def contains_pii(value: str) -> bool:
    """Tell whether :func:`mask_value` would change ``value``.

    Args:
        value: Text that should carry no personal data (a correlation id, a key).

    Returns:
        ``True`` if it contains something the masker hides.
    """
    return mask_value(value) != value


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
    if (
        kind is _Kind.PLAIN
        and isinstance(obj, int)
        and not isinstance(obj, bool)
        and _is_card_number(str(obj))
    ):
        return MASK + str(obj)[-4:]
    # Numbers, booleans, None, datetimes...: nothing to mask. Plain integers are
    # never treated as phone numbers outside phone keys (they are counts and ids),
    # only as card numbers when they pass the Luhn check.
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


def _redact(obj: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return MASK
    if isinstance(obj, Mapping):
        return {
            k: (
                MASK
                if isinstance(k, str) and is_sensitive_key(k)
                else _redact(v, depth + 1)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        items = [_redact(item, depth + 1) for item in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def redact_secrets(obj: Any) -> Any:
    """Withhold secrets, keep everything else exactly as written.

    For data shown to an authorised reader (the audit trail): values under
    sensitive keys (``password_hash``, ``token_hash``, ``api_key``... see
    :func:`is_sensitive_key`) become ``"***"`` whatever their type; every other
    value, personal data included, is returned unchanged. Use :func:`mask_data`
    for logs.

    Args:
        obj: A JSON-like value.

    Returns:
        A redacted copy; the input is never modified.
    """
    return _redact(obj, 0)
