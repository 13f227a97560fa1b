"""Drafts: widget values saved as they are typed, before the form is saved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

MAX_VALUE_BYTES = 256 * 1024
KEY_PATTERN = r"^[A-Za-z0-9_.:\-/]+$"


class DraftWrite(BaseModel):
    form_id: str = Field(min_length=1, max_length=200, pattern=KEY_PATTERN)
    field: str = Field(min_length=1, max_length=200, pattern=KEY_PATTERN)
    value: Any = None
    # The client's sequence number for this key: an older write never overwrites a newer.
    seq: int = Field(default=0, ge=0, le=2**63 - 1)

    @field_validator("value")
    @classmethod
    def _size(cls, value: Any) -> Any:
        # A cheap bound on the stored size.
        if len(repr(value)) > MAX_VALUE_BYTES:
            raise ValueError(f"value larger than {MAX_VALUE_BYTES} bytes")
        return value


class DraftBatch(BaseModel):
    items: list[DraftWrite] = Field(min_length=1, max_length=500)


class DraftRead(BaseModel):
    form_id: str
    field: str
    value: Any
    version: int
    seq: int
    updated_at: datetime


class DraftResult(BaseModel):
    form_id: str
    field: str
    version: int
    applied: bool


class DraftBatchResult(BaseModel):
    items: list[DraftResult]
