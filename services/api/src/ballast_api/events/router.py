from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ballast_api.deps import DBDep, WriteCtxDep, require
from ballast_api.principal import Principal
from ballast_common.contracts import EventBatch
from ballast_common.db import UnitOfWork, run_tx_async
from ballast_common.models import EventRow
from ballast_common.security import Permission
from ballast_common.telemetry import mask_data, track

router = APIRouter(prefix="/events", tags=["events"])
Tracker = Annotated[Principal, Depends(require(Permission.EVENTS_WRITE))]


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
