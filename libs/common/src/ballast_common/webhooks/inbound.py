"""Inbound webhooks: accept once per webhook id, process as a job, keep dead letters.

`accept` runs in the api's transaction after the signature was verified: it stores a
`WebhookReceipt` (unique per source and webhook id, remembered for
``webhooks.replay_ttl_s``) and a ``webhooks.process`` job in the same transaction. A
second delivery of the same id -- the sender retrying, or someone replaying a captured
request within the timestamp tolerance -- finds the receipt and is acknowledged without
being processed again. The worker runs `process`; a failure leaves the receipt FAILED,
listed by ``ballast webhooks list`` and sent through processing again by
``ballast webhooks replay``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from ballast_common.db import DB, UnitOfWork, run_tx
from ballast_common.errors import NotFoundError, ValidationError
from ballast_common.models import EventRow, Job, WebhookReceipt, utcnow
from ballast_common.models.webhook import PROCESS_TASK, system_job

RECEIVED, PROCESSED, FAILED = "RECEIVED", "PROCESSED", "FAILED"
# What a source's payload does once accepted: runs in the processing transaction.
Handler = Callable[[UnitOfWork, WebhookReceipt], None]


def _record(uow: UnitOfWork, receipt: WebhookReceipt) -> None:
    """The default handler: the webhook becomes a tracked event ``webhook.<source>``."""
    uow.session.add(
        EventRow(
            name=f"webhook.{receipt.source}"[:100],
            props={
                "type": receipt.event_type,
                "webhook_id": receipt.webhook_id,
                "receipt_id": str(receipt.id),
            },
            created_at=utcnow(),
        )
    )


HANDLERS: dict[str, Handler] = {}


def handler_for(source: str) -> Handler:
    return HANDLERS.get(source, _record)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_text(value: Any, path: str) -> None:
    """Refuse what no backend can store: NUL and lone surrogates, anywhere."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"the payload contains a NUL character at {path}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                f"the payload contains an unpaired surrogate at {path}"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path)
            _check_text(item, f"{path}.{key}"[:200])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]"[:200])


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a (verified) body.

    Raises:
        ValidationError: not UTF-8 JSON, not an object, NaN/Infinity, NUL characters,
            unpaired surrogates or nesting too deep (422).
    """
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValidationError(
            f"the payload is not valid JSON: {reason}"[:300]
        ) from None
    if not isinstance(payload, dict):
        raise ValidationError("the payload must be a JSON object")
    try:
        _check_text(payload, "$")
    except RecursionError:
        raise ValidationError(
            "the payload is not valid JSON: nested too deeply"
        ) from None
    return payload


@dataclass(frozen=True)
class Accepted:
    receipt_id: uuid.UUID
    duplicate: bool
    job: Job | None


def accept(
    uow: UnitOfWork,
    *,
    source: str,
    webhook_id: str,
    payload: Mapping[str, Any],
    ttl_s: int,
) -> Accepted:
    """Store a verified webhook once and add its processing job (PENDING; the caller
    sends it after commit). A known webhook id answers ``duplicate`` and adds nothing.
    """
    if not webhook_id or len(webhook_id) > 200:
        raise ValidationError("webhook-id must have 1 to 200 characters")
    found = uow.session.execute(
        select(WebhookReceipt.id).where(
            WebhookReceipt.source == source, WebhookReceipt.webhook_id == webhook_id
        )
    ).scalar_one_or_none()
    if found is not None:
        return Accepted(found, True, None)
    now = utcnow()
    receipt_id = uuid.uuid4()
    job = system_job(
        PROCESS_TASK, {"receipt_id": str(receipt_id)}, max_retries=3, dispatched_at=now
    )
    uow.session.add(job)
    event_type = payload.get("type")
    uow.session.add(
        WebhookReceipt(
            id=receipt_id,
            source=source,
            webhook_id=webhook_id,
            event_type=str(event_type)[:200] if event_type is not None else None,
            payload=dict(payload),
            status=RECEIVED,
            attempts=0,
            job_id=job.id,
            received_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    uow.flush()
    return Accepted(receipt_id, False, job)


def process(db: DB, receipt_id: uuid.UUID) -> str:
    """Run the source's handler once (idempotent: a PROCESSED receipt is skipped);
    forgets processed receipts whose replay window is over.

    Returns:
        ``processed``, ``skipped`` (done before, or gone).
    """

    def work(uow: UnitOfWork) -> str:
        receipt = uow.session.execute(
            select(WebhookReceipt)
            .where(WebhookReceipt.id == receipt_id)
            .with_for_update()
        ).scalar_one_or_none()
        if receipt is None or receipt.status == PROCESSED:
            return "skipped"
        handler_for(receipt.source)(uow, receipt)
        receipt.status = PROCESSED
        receipt.attempts += 1
        receipt.error = None
        receipt.processed_at = utcnow()
        uow.session.execute(
            delete(WebhookReceipt).where(
                WebhookReceipt.expires_at < utcnow(),
                WebhookReceipt.status == PROCESSED,
            )
        )
        return "processed"

    return run_tx(work, db=db)


def dead_letter(db: DB, receipt_id: uuid.UUID, error: str) -> None:
    """Mark a receipt FAILED with `error` (it stays until replayed)."""
    with db.engine.begin() as conn:
        conn.execute(
            update(WebhookReceipt)
            .where(WebhookReceipt.id == receipt_id, WebhookReceipt.status != PROCESSED)
            .values(
                status=FAILED,
                error=error[:2000],
                attempts=WebhookReceipt.attempts + 1,
            )
        )


def list_receipts(
    db: DB, *, status: str | None = FAILED, source: str | None = None, limit: int = 50
) -> list[WebhookReceipt]:
    """Receipts, newest first (default: the dead letters)."""
    query = select(WebhookReceipt).order_by(WebhookReceipt.received_at.desc())
    if status is not None:
        query = query.where(WebhookReceipt.status == status)
    if source is not None:
        query = query.where(WebhookReceipt.source == source)
    with db.session() as session:
        rows = list(session.execute(query.limit(limit)).scalars())
        session.expunge_all()
        return rows


def replay(db: DB, receipt_ids: list[uuid.UUID] | None) -> list[uuid.UUID]:
    """Queue dead letters for processing again (all of them when `receipt_ids` is None).

    The jobs are left to the workers' sweeper (sent within ``jobs.sweep_interval_s``).

    Raises:
        NotFoundError: a named receipt does not exist or is not FAILED.
    """

    def work(uow: UnitOfWork) -> list[uuid.UUID]:
        query = select(WebhookReceipt).where(WebhookReceipt.status == FAILED)
        if receipt_ids is not None:
            query = query.where(WebhookReceipt.id.in_(receipt_ids))
        rows = list(uow.session.execute(query.with_for_update()).scalars())
        if receipt_ids is not None:
            missing = set(receipt_ids) - {r.id for r in rows}
            if missing:
                raise NotFoundError(
                    "no dead letter with id "
                    + ", ".join(sorted(str(m) for m in missing))
                )
        for receipt in rows:
            job = system_job(
                PROCESS_TASK, {"receipt_id": str(receipt.id)}, max_retries=3
            )
            uow.session.add(job)
            receipt.status = RECEIVED
            receipt.job_id = job.id
            uow.audit(
                "webhook_replayed",
                "webhook_receipts",
                str(receipt.id),
                new={"source": receipt.source, "webhook_id": receipt.webhook_id},
            )
        return [r.id for r in rows]

    return run_tx(work, db=db)
