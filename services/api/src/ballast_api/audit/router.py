from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from ballast_api.deps import DBDep, require
from ballast_api.principal import Principal
from ballast_api.schemas import MAX_PAGE
from ballast_common.contracts import AuditRead, Page
from ballast_common.db import PageResult, UnitOfWork, run_tx_async
from ballast_common.fields import Timestamp
from ballast_common.models import AuditLog
from ballast_common.security import Permission
from ballast_common.telemetry import redact_secrets

router = APIRouter(prefix="/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


def _redacted(row: AuditRead) -> AuditRead:
    """Secrets (password and token hashes) never leave the api; user text is shown as written.

    The trail is read by admins to see who changed what: a description, an e-mail
    address or a phone number an editor typed comes back exactly as typed (masking is
    for logs). Values under secret-named columns are withheld. The rows themselves keep
    the full values: incremental backups replay them.
    """
    if row.old_values is not None:
        row.old_values = redact_secrets(row.old_values)
    if row.new_values is not None:
        row.new_values = redact_secrets(row.new_values)
    return row


@router.get("", response_model=Page[AuditRead])
async def query_audit(
    _principal: Auditor,
    db: DBDep,
    resource_type: Annotated[str | None, Query(max_length=64)] = None,
    resource_id: Annotated[str | None, Query(max_length=200)] = None,
    user_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    correlation_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[AuditRead]:
    """The audit trail (admin), newest first, filtered."""
    clauses: list[Any] = []
    for column, value in (
        (AuditLog.resource_type, resource_type),
        (AuditLog.resource_id, resource_id),
        (AuditLog.user_id, user_id),
        (AuditLog.action, action),
        (AuditLog.correlation_id, correlation_id),
    ):
        if value is not None:
            clauses.append(column == value)
    if since is not None:
        clauses.append(AuditLog.timestamp >= since)
    if until is not None:
        clauses.append(AuditLog.timestamp < until)

    def work(uow: UnitOfWork) -> Page[AuditRead]:
        total = uow.session.execute(
            select(func.count(AuditLog.id)).where(*clauses)
        ).scalar_one()
        rows = uow.session.execute(
            select(AuditLog)
            .where(*clauses)
            .order_by(AuditLog.id.desc())
            .offset((page - 1) * size)
            .limit(size)
        ).scalars()
        return Page[AuditRead].of(
            PageResult(list(rows), total, page, size),
            lambda r: _redacted(AuditRead.model_validate(r)),
        )

    return await run_tx_async(work, db=db)
