from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionRead(BaseModel):
    token: str = Field(
        description="Opaque bearer token; shown once, stored only hashed."
    )
    session_id: uuid.UUID
    expires_at: datetime
    idle_timeout_s: int
    user: UserRead


class UserRead(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    roles: list[str]
    permissions: list[str]
    preferences: dict[str, object]


SessionRead.model_rebuild()
