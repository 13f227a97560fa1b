from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from ballast_api import policy
from ballast_api.deps import DBDep, WriteCtxDep, WriteIdDep, require
from ballast_api.forms import service
from ballast_api.forms.fast import save_form as save_form_fast
from ballast_api.forms.hot import DECLINED
from ballast_api.policy import Access
from ballast_api.principal import Principal
from ballast_api.writes import idempotent_write
from ballast_common.contracts.forms import (
    FORM_ID_MAX_LENGTH,
    FORM_ID_PATTERN,
    FormRead,
    FormSave,
)
from ballast_common.db import UnitOfWork, bust_after_commit, run_tx_async
from ballast_common.security import Permission

router = APIRouter(prefix="/forms", tags=["forms"])
Reader = Annotated[Principal, Depends(require(Permission.FORMS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.FORMS_WRITE))]
FormId = Annotated[
    str, Path(min_length=1, max_length=FORM_ID_MAX_LENGTH, pattern=FORM_ID_PATTERN)
]


@router.put(
    "/{form_id}",
    response_model=FormRead,
    responses={
        409: {"description": "Stale version: details carry current and attempted"}
    },
)
async def save_form(
    form_id: FormId,
    body: FormSave,
    principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
    request: Request,
    response: Response,
) -> FormRead:
    """Save a form (create or update) with optimistic concurrency; idempotent per
    Idempotency-Key. A project's form (`project.<id>`, `project-extras.<id>`) follows
    its project: 404 if I cannot see it, 403 if I may only read it."""
    if policy.project_of_form(form_id) is not None:
        await run_tx_async(
            lambda uow: policy.check_form(uow, principal, form_id, Access.WRITE), db=db
        )
    if not db.is_sqlite and not request.scope.get(DECLINED):
        # PostgreSQL: one statement, one round trip (forms/fast.py). Replays and
        # conflicts come back as None and take the general path. (Usually forms/hot.py
        # ran it already, past the router, and sends only those here.)
        fast = await save_form_fast(db, ctx, principal.user_id, form_id, body, write_id)
        if fast is not None:
            status, saved, touched = fast
            await bust_after_commit(touched)
            response.status_code = status
            return saved

    def work(uow: UnitOfWork) -> tuple[int, FormRead]:
        # Again in the write's transaction: sharing may have changed meanwhile.
        policy.check_form(uow, principal, form_id, Access.WRITE)
        return idempotent_write(
            uow,
            write_id,
            "forms.save",
            {"form_id": form_id, **body.model_dump(mode="json")},
            FormRead,
            lambda: service.save_form(uow, principal.user_id, form_id, body),
        )

    status, form = await run_tx_async(work, db=db, ctx=ctx)
    response.status_code = status
    return form


@router.get("/{form_id}", response_model=FormRead)
async def load_form(form_id: FormId, principal: Reader, db: DBDep) -> FormRead:
    """Load a saved form (a project's form: if I may see the project, else 404)."""

    def work(uow: UnitOfWork) -> FormRead:
        policy.check_form(uow, principal, form_id, Access.READ)
        return service.load_form(uow, form_id)

    return await run_tx_async(work, db=db)
