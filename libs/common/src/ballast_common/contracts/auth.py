"""Sessions: logging in and who is logged in."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserRead(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    roles: list[str]
    permissions: list[str]
    preferences: dict[str, object]

    def can(self, permission: str) -> bool:
        """Whether the api granted ``permission`` (e.g. ``"projects:write"``)."""
        return permission in self.permissions


class SessionRead(BaseModel):
    # repr=False: the token never shows up in a log line or a traceback.
    token: str = Field(
        description="Opaque bearer token; shown once, stored only hashed.", repr=False
    )
    session_id: uuid.UUID
    expires_at: datetime
    idle_timeout_s: int
    user: UserRead


class SignInMethods(BaseModel):
    """How a user may sign in here (what the login page offers)."""

    password: bool = Field(description="Username + password accounts are on.")
    oidc: bool = Field(description="Single sign-on through an OpenID Connect provider.")
    oidc_label: str | None = Field(
        default=None, description="Label of the single sign-on button."
    )
    proxy: bool = Field(
        description="Trusted-header sign-in behind an authenticating proxy."
    )


# A random secret the browser that begins a single sign-on keeps (the ui holds it in an
# HttpOnly cookie): the sign-in finishes only where it began, so an attacker cannot
# have a victim's browser finish a sign-in into the attacker's account (login CSRF).
BrowserBinding = Annotated[
    str,
    Field(
        min_length=43,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="A random secret (43-128 URL-safe characters, e.g. 32 random "
        "bytes in base64url) the browser beginning the sign-in keeps; the same "
        "secret must finish it.",
        repr=False,
    ),
]


class OidcBegin(BaseModel):
    """Start a single sign-on for one browser."""

    binding: BrowserBinding


class OidcAuthorization(BaseModel):
    authorization_url: str = Field(
        description="Send the browser here; the provider comes back with code and state."
    )


class OidcCallback(BaseModel):
    """What the provider sent back to the redirect URI."""

    code: str = Field(min_length=1, max_length=2048)
    state: str = Field(min_length=1, max_length=4096)
    binding: BrowserBinding


class HandoffCreated(BaseModel):
    """A one-time nonce the browser trades for its session cookie (at any ui replica)."""

    nonce: str
    expires_at: datetime
    max_age_s: int


class HandoffRedeem(BaseModel):
    nonce: str = Field(min_length=1, max_length=200)


class HandoffToken(BaseModel):
    """The session token a hand-off nonce stood for, and the cookie's lifetime."""

    token: str
    max_age_s: int
