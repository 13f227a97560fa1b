"""Forms: saved form data with a version (optimistic concurrency)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, StrictBool, StrictInt

from ballast_common.fields import INT32_MAX

FORM_ID_PATTERN = r"^[A-Za-z0-9_.:\-/]+$"
FORM_ID_MAX_LENGTH = 200


class FormSave(BaseModel):
    data: dict[str, Any]
    expected_version: StrictInt | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="The version the edit is based on (0 for a new form). A stale version "
        "is answered with 409 carrying both versions, unless `force` is set.",
    )
    force: StrictBool = Field(
        default=False, description="Last write wins even on a stale version."
    )
    clear_drafts: StrictBool = Field(
        default=True, description="Discard my drafts of this form."
    )


class FormConflict(BaseModel):
    expected_version: int
    current_version: int
    current: dict[str, Any]


class FormRead(BaseModel):
    form_id: str
    data: dict[str, Any]
    version: int
    updated_at: datetime
    updated_by: uuid.UUID | None
    # Set when a stale save was applied anyway (force / last-write-wins).
    overwrote: FormConflict | None = None
