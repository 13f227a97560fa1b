from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from ballast_common.contracts.webhooks import (
    EVENT_TYPES,
    DeliveryRead,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
)
from ballast_common.models.webhook import WEBHOOK_EVENTS

# The subscription contract is shared with the UI; the inbound answer is the api's own.
__all__ = [
    "DeliveryRead",
    "SubscriptionCreate",
    "SubscriptionCreated",
    "SubscriptionRead",
    "WebhookAccepted",
]
if set(EVENT_TYPES) != set(WEBHOOK_EVENTS):  # the contract and the emitters agree
    raise ImportError("ballast_common.contracts.webhooks.EventType != WEBHOOK_EVENTS")


class WebhookAccepted(BaseModel):
    # accepted: queued for processing; duplicate: this webhook id was received before.
    status: Literal["accepted", "duplicate"]
    id: uuid.UUID
