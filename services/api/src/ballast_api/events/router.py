from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ballast_api.deps import DBDep, WriteCtxDep, require
from ballast_api.principal import Principal
from ballast_common.db import UnitOfWork, run_tx_async
from ballast_common.models import EventRow
from ballast_common.security import Permission
from ballast_common.telemetry import mask_data, track
from ballast_common.telemetry.events import (
    EVENT_NAME_PATTERN,
    MAX_EVENT_NAME_LENGTH,
)

router = APIRouter(prefix="/events", tags=["events"])
Tracker = Annotated[Principal, Depends(require(Permission.EVENTS_WRITE))]


class EventIn(BaseModel):
    # The rule track() applies, checked here so no event is stored that it refuses.
    event: str = Field(
        min_length=1, max_length=MAX_EVENT_NAME_LENGTH, pattern=EVENT_NAME_PATTERN
    )
    props: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(default=None, max_length=64)


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=200)


@router.post("", status_code=202, response_model=dict[str, int])
async def track_events(
    body: EventBatch, principal: Tracker, db: DBDep, ctx: WriteCtxDep
) -> dict[str, int]:
    """Record user events (track): stored masked, counted in ballast_events_total."""

    def work(uow: UnitOfWork) -> int:
        rows = [
            {
                "name": e.event,
                "props": mask_data(e.props),
                "user_id": principal.user_id,
                "session_id": e.session_id,
                "correlation_id": ctx.correlation_id,
                "trace_id": ctx.trace_id,
            }
            for e in body.events
        ]
        uow.repo(EventRow).bulk_create(rows)
        return len(rows)

    n = await run_tx_async(work, db=db, ctx=ctx)
    for e in body.events:
        track(e.event, e.props)
    return {"accepted": n}
