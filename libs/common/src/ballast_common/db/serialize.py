"""JSON-safe conversion of column values (audit rows, idempotent responses)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any


def jsonable(value: Any) -> Any:
    """Column values as JSON-safe data for audit rows and responses."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)
