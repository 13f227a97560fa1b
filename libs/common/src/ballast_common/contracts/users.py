"""User administration and personal preferences."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

from ballast_common.fields import INT32_MAX

RoleName = Literal["viewer", "editor", "admin"]
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{1,63}$"


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: Literal["auto", "light", "dark"] = "auto"
    language: Literal["en", "de"] = "en"
    timezone: str = Field(default="UTC", max_length=64)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=10, max_length=1024)
    display_name: str = Field(default="", max_length=128)
    email: EmailStr | None = None
    # Pydantic copies mutable defaults per instance.
    roles: list[RoleName] = Field(default=["viewer"], min_length=1)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=128)
    email: EmailStr | None = Field(default=None, description="null clears the e-mail.")
    is_active: StrictBool | None = None
    roles: list[RoleName] | None = Field(default=None, min_length=1)
    expected_version: StrictInt | None = Field(default=None, ge=1, le=INT32_MAX)

    @field_validator("display_name", "is_active", "roles")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for fields the client sent: leaving one out is fine, null is not.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class UserAdminRead(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    is_active: bool
    roles: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
