"""Strict field types for request models, shared by the api and the job contracts.

Lax coercion turns attacker input into surprising values: `1700000000` into a datetime,
`"1"` into True, `0001-01-01` into PostgreSQL's `-infinity`. These types accept one
spelling each:

- `Day`, `Timestamp`: ISO 8601 text only (no numbers), strictly inside the range every
  backend stores as a finite value (asyncpg writes `date.min`/`date.max` as ∓infinity);
  a `Timestamp` needs an offset (`Z`, `+02:00`).
- `Flag`: JSON true/false, or the words `true`/`false` in a query string.
- `Count`: a JSON integer (no strings, no floats) within a 32-bit column.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt

# Finite on every backend: one day inside Python's range on both ends (a time zone
# offset cannot push a timestamp over the edge).
MIN_DAY = date.min + timedelta(days=1)
MAX_DAY = date.max - timedelta(days=1)
INT32_MAX = 2**31 - 1


def _text_only(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date/time string")
    if value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("expected an ISO 8601 date/time, not a number")
    return value


def _finite_day(value: date) -> date:
    if not MIN_DAY <= value <= MAX_DAY:
        raise ValueError(f"date must be between {MIN_DAY} and {MAX_DAY}")
    return value


def _finite_time(value: datetime) -> datetime:
    if not MIN_DAY <= value.replace(tzinfo=None).date() <= MAX_DAY:
        raise ValueError(f"timestamp must be between {MIN_DAY} and {MAX_DAY}")
    if value.tzinfo is None:
        # Guessing a zone would silently shift the instant by hours.
        raise ValueError("needs a time zone offset (e.g. 2026-01-01T10:00:00Z)")
    return value


def _flag(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("expected true or false")


Day = Annotated[date, BeforeValidator(_text_only), AfterValidator(_finite_day)]
Timestamp = Annotated[
    datetime, BeforeValidator(_text_only), AfterValidator(_finite_time)
]
Flag = Annotated[bool, BeforeValidator(_flag)]
Count = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]

__all__ = ["INT32_MAX", "MAX_DAY", "MIN_DAY", "Count", "Day", "Flag", "Timestamp"]
