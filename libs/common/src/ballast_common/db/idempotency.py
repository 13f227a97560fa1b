"""Idempotent writes: a client's write id runs its write once; a replay gets the stored outcome.

The id is claimed in `write_ids` by one INSERT ... ON CONFLICT DO NOTHING in the write's
own transaction; the outcome (status code, JSON response) is stored in the same
transaction. A concurrent claimant waits on the unique index until the first commits,
then replays it (`WriteIdRace` on SQLite, retried by `run_tx`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ballast_common.db.serialize import jsonable
from ballast_common.errors import TransientError, ValidationError
from ballast_common.models import WriteRecord, utcnow


class WriteIdRace(TransientError):
    """Another transaction holds the same write id; retrying replays its outcome."""


@dataclass
class Replay:
    """The stored outcome of an idempotent write."""

    status_code: int
    response: dict[str, Any]
    replayed: bool


_RECORD_OUTCOME = (
    update(WriteRecord)
    .where(WriteRecord.write_id == bindparam("wid"))
    .values(status_code=bindparam("status_code"), response=bindparam("response"))
)

# The claim statement per dialect, built once so SQLAlchemy's compiled cache serves it.
_CLAIM = {
    name: factory(WriteRecord)
    .on_conflict_do_nothing(index_elements=[WriteRecord.write_id])
    .returning(WriteRecord.write_id)
    for name, factory in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def fingerprint(payload: Any) -> str:
    """A stable hash of a request payload (to catch a write id reused for other data)."""
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def run_once(
    session: Session,
    user_id: uuid.UUID | None,
    write_id: str | None,
    operation: str,
    payload: Any,
    fn: Callable[[], tuple[int, dict[str, Any]]],
) -> Replay:
    """Run `fn` once per write id in `session`'s transaction (see `UnitOfWork.idempotent`)."""
    if write_id is None:
        status, response = fn()
        return Replay(status, response, replayed=False)
    if not 1 <= len(write_id) <= 100:
        raise ValidationError(
            "write id must be 1 to 100 characters", details={"fields": ["write_id"]}
        )
    digest = fingerprint(payload)
    # Claim the id first, in one statement: a concurrent claimant of the same id waits
    # on the unique index until we commit, then finds our row and replays it.
    # Core, not ORM, execution: the ORM bulk-insert path costs more than the query.
    conn = session.connection()
    claimed = conn.execute(
        _CLAIM[conn.dialect.name],
        {
            "write_id": write_id,
            "user_id": user_id,
            "operation": operation,
            "fingerprint": digest,
            "status_code": 0,
            "response": {},
            "created_at": utcnow(),
        },
    ).scalar_one_or_none()
    if claimed is None:
        existing = session.execute(
            select(WriteRecord).where(WriteRecord.write_id == write_id)
        ).scalar_one_or_none()
        if existing is None or existing.status_code == 0:
            # Claimed by a transaction that has not finished yet (SQLite) or vanished.
            raise WriteIdRace("write id claimed by a concurrent request")
        if (
            existing.operation != operation
            or existing.fingerprint != digest
            or existing.user_id != user_id
        ):
            raise ValidationError(
                "write id was already used for a different request",
                details={"fields": ["write_id"], "write_id": write_id},
            )
        return Replay(existing.status_code, dict(existing.response), replayed=True)
    status, response = fn()
    # Return what a replay will return (JSON-safe), so every caller sees one result.
    stored: dict[str, Any] = jsonable(response)
    conn.execute(
        _RECORD_OUTCOME,
        {"wid": write_id, "status_code": status, "response": stored},
    )
    return Replay(status, dict(stored), replayed=False)
