"""Small helpers shared by the database tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from ballast_common.db import DB, UnitOfWork, run_tx
from ballast_common.models import AuditLog, Project, WriteRecord


def new_project(db: DB, **values: Any) -> uuid.UUID:
    """Create a project in its own transaction and return its id."""
    data: dict[str, Any] = {"name": "Alpha", **values}

    def fn(uow: UnitOfWork) -> uuid.UUID:
        return uow.repo(Project).create(data).id

    return run_tx(fn, db=db)


def audit_rows(db: DB, resource_id: Any | None = None) -> list[AuditLog]:
    """Audit rows in id order (optionally for one resource)."""
    with db.session() as session:
        stmt = select(AuditLog).order_by(AuditLog.id)
        if resource_id is not None:
            stmt = stmt.where(AuditLog.resource_id == str(resource_id))
        return list(session.execute(stmt).scalars())


def count(db: DB, model: type[Any]) -> int:
    with db.session() as session:
        return int(
            session.execute(select(func.count()).select_from(model)).scalar_one()
        )


def load(db: DB, model: type[Any], entity_id: Any) -> Any:
    """A fresh copy of one row (no soft-delete filter), or None."""
    with db.session() as session:
        return session.get(model, entity_id)


def write_records(db: DB) -> list[WriteRecord]:
    with db.session() as session:
        return list(
            session.execute(
                select(WriteRecord).order_by(WriteRecord.write_id)
            ).scalars()
        )
