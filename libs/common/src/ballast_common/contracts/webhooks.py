"""Outbound webhooks: subscriptions and the delivery log (admins; `/v1/webhooks`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

EventType = Literal["job.completed", "job.failed", "project.updated", "dataset.ready"]
# The event types a subscription may ask for (`ballast_common.models.webhook` emits them).
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DeliveryStatus = Literal["PENDING", "SUCCEEDED", "FAILED"]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    events: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    description: str = Field(default="", max_length=500)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: HttpUrl) -> HttpUrl:
        if value.scheme not in ("http", "https") or len(str(value)) > 2000:
            raise ValueError("must be an http(s) URL of at most 2000 characters")
        if value.username or value.password:
            raise ValueError("must not carry credentials")
        return value


class SubscriptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    enabled: bool
    created_at: datetime
    # One of the subscription's circuit: closed, half-open, open.
    circuit: str | None = None


class SubscriptionCreated(SubscriptionRead):
    # The signing secret (whsec_...): shown this once.
    secret: str


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    subscription_id: uuid.UUID
    event_type: str
    message_id: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    job_id: uuid.UUID | None
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    completed_at: datetime | None
    payload: dict[str, Any]
