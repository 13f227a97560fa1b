from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

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
    email: EmailStr | None = None
    is_active: bool | None = None
    roles: list[RoleName] | None = Field(default=None, min_length=1)
    expected_version: int | None = Field(default=None, ge=1)


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
