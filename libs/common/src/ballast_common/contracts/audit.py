"""The audit log as the api lists it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: uuid.UUID | None
    action: str
    resource_type: str
    resource_id: str
    old_values: dict[str, Any] | None
    new_values: dict[str, Any] | None
    timestamp: datetime
    correlation_id: str | None
    trace_id: str | None
    ip_address: str | None
    user_agent: str | None
    write_id: str | None
