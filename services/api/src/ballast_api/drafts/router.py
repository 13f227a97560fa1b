from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ballast_api.deps import DBDep, WriteCtxDep, WriteIdDep, require
from ballast_api.drafts import service
from ballast_api.drafts.fast import upsert as upsert_fast
from ballast_api.principal import Principal
from ballast_api.writes import idempotent_write
from ballast_common.contracts.drafts import (
    KEY_PATTERN,
    DraftBatch,
    DraftBatchResult,
    DraftRead,
)
from ballast_common.db import UnitOfWork, bust_after_commit, run_tx_async
from ballast_common.security import Permission

router = APIRouter(prefix="/drafts", tags=["drafts"])
Reader = Annotated[Principal, Depends(require(Permission.DRAFTS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.DRAFTS_WRITE))]


@router.put("", response_model=DraftBatchResult)
async def upsert_drafts(
    body: DraftBatch,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
) -> DraftBatchResult:
    """Batch upsert of widget values (the outbox flush); idempotent per Idempotency-Key."""
    if not db.is_sqlite:
        # PostgreSQL: the whole batch in one statement (drafts/fast.py); a replay comes
        # back as None and takes the general path.
        fast = await upsert_fast(db, ctx, principal.user_id, body, write_id)
        if fast is not None:
            batch_result, touched = fast
            await bust_after_commit(touched)
            return batch_result

    def work(uow: UnitOfWork) -> tuple[int, DraftBatchResult]:
        return idempotent_write(
            uow,
            write_id,
            "drafts.upsert",
            body.model_dump(mode="json"),
            DraftBatchResult,
            lambda: (
                200,
                DraftBatchResult(items=service.upsert(uow, principal.user_id, body)),
            ),
        )

    _, result = await run_tx_async(work, db=db, ctx=ctx)
    return result


@router.get("", response_model=list[DraftRead])
async def get_drafts(
    principal: Reader,
    db: DBDep,
    form_id: Annotated[str | None, Query(max_length=200, pattern=KEY_PATTERN)] = None,
) -> list[DraftRead]:
    """My drafts, optionally of one form."""
    return await run_tx_async(
        lambda uow: service.list_drafts(uow, principal.user_id, form_id), db=db
    )


@router.delete("", response_model=dict[str, int])
async def discard_drafts(
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    form_id: Annotated[str, Query(min_length=1, max_length=200, pattern=KEY_PATTERN)],
    field: Annotated[list[str] | None, Query()] = None,
) -> dict[str, int]:
    """Discard my drafts of a form (all fields, or the given ones)."""
    n = await run_tx_async(
        lambda uow: service.discard(uow, principal.user_id, form_id, field),
        db=db,
        ctx=ctx,
    )
    return {"deleted": n}
