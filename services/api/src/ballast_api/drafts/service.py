"""Drafts: the server side of persist_input (batch upsert per user, newest seq wins)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, tuple_

from ballast_common.contracts import DraftBatch, DraftRead, DraftResult
from ballast_common.db import UnitOfWork, jsonable
from ballast_common.models import Draft


def upsert(uow: UnitOfWork, user_id: uuid.UUID, batch: DraftBatch) -> list[DraftResult]:
    """Apply a batch: one audit row per value that really changed."""
    # The outbox coalesces per key, but a batch may still repeat one: keep the newest.
    latest: dict[tuple[str, str], Any] = {}
    for item in batch.items:
        key = (item.form_id, item.field)
        if key not in latest or item.seq >= latest[key].seq:
            latest[key] = item
    existing = {
        (d.form_id, d.field): d
        for d in uow.session.execute(
            select(Draft)
            .where(
                Draft.user_id == user_id,
                tuple_(Draft.form_id, Draft.field).in_(list(latest)),
            )
            .with_for_update()
        ).scalars()
    }
    repo = uow.repo(Draft)
    results = []
    for key, item in latest.items():
        row = existing.get(key)
        if row is None:
            row = repo.create(
                user_id=user_id,
                form_id=item.form_id,
                field=item.field,
                value=item.value,
                client_seq=item.seq,
            )
            applied = True
        elif item.seq < row.client_seq:
            applied = False
        elif jsonable(row.value) == jsonable(item.value):
            # Same value: only remember the sequence (no effective change, no audit row).
            row.client_seq = item.seq
            applied = False
        else:
            repo.update_entity(row, {"value": item.value, "client_seq": item.seq})
            applied = True
        results.append(
            DraftResult(
                form_id=item.form_id,
                field=item.field,
                version=row.version,
                applied=applied,
            )
        )
    return results


def list_drafts(
    uow: UnitOfWork, user_id: uuid.UUID, form_id: str | None
) -> list[DraftRead]:
    stmt = select(Draft).where(Draft.user_id == user_id)
    if form_id is not None:
        stmt = stmt.where(Draft.form_id == form_id)
    rows = uow.session.execute(stmt.order_by(Draft.form_id, Draft.field)).scalars()
    return [
        DraftRead(
            form_id=d.form_id,
            field=d.field,
            value=d.value,
            version=d.version,
            seq=d.client_seq,
            updated_at=d.updated_at,
        )
        for d in rows
    ]


def discard(
    uow: UnitOfWork, user_id: uuid.UUID, form_id: str, fields: list[str] | None = None
) -> int:
    """Delete a user's drafts of one form (after a save or on Reset). Audited."""
    stmt = select(Draft).where(Draft.user_id == user_id, Draft.form_id == form_id)
    if fields:
        stmt = stmt.where(Draft.field.in_(fields))
    repo = uow.repo(Draft)
    drafts = uow.session.execute(stmt.with_for_update()).scalars().all()
    for draft in drafts:
        repo.delete_entity(draft, soft=False)
    return len(drafts)
