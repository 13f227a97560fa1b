"""Writes through the audited unit of work, and table snapshots to compare against."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from ballast_backup import changes
from ballast_backup.dbio import Target, list_tables, table_stats
from ballast_common.db.engine import DB
from ballast_common.db.uow import UnitOfWork, run_tx
from ballast_common.models import Draft, Project
from ballast_common.seed import seed_demo


def seed(db: DB) -> None:
    run_tx(lambda uow: seed_demo(uow), db=db)


def create_projects(db: DB, n: int, prefix: str) -> list[uuid.UUID]:
    def work(uow: UnitOfWork) -> list[uuid.UUID]:
        repo = uow.repo(Project)
        return [
            repo.create(
                name=f"{prefix}-{i}",
                description="ünïcode ✓ " * (i % 3),
                budget=1234.5 + i,
                start_date=dt.date(2026, 1, 1 + i % 28),
                tags=["a", {"k": i}],
                is_public=bool(i % 2),
            ).id
            for i in range(n)
        ]

    return run_tx(work, db=db)


def update_project(db: DB, project_id: uuid.UUID, **values: Any) -> None:
    run_tx(lambda uow: uow.repo(Project).update(project_id, values), db=db)


def delete_project(db: DB, project_id: uuid.UUID, *, soft: bool) -> None:
    run_tx(lambda uow: uow.repo(Project).delete(project_id, soft=soft), db=db)


def add_draft(db: DB, user_id: uuid.UUID, field: str, value: Any) -> None:
    run_tx(
        lambda uow: uow.repo(Draft).create(
            user_id=user_id, form_id="project", field=field, value=value
        ),
        db=db,
    )


def state(db: DB) -> dict[str, dict[str, Any]]:
    """Row counts and content checksums of every table, as incrementals compare them."""
    engine = Target.parse(db.url).engine()
    try:
        with engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            present = set(list_tables(conn))
            columns = {
                t: c for t, c in changes.compared_columns().items() if t in present
            }
            return table_stats(conn, columns)
    finally:
        engine.dispose()


def state_of(url: str) -> dict[str, dict[str, Any]]:
    db = DB(url)
    try:
        return state(db)
    finally:
        db.dispose()
