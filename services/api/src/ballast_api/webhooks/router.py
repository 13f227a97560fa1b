"""Webhooks: inbound deliveries from configured sources, and the admins' outbound
subscriptions with their delivery log.

The admin routes are declared before ``POST /webhooks/{source}``, and their names are
reserved source names (`ballast_common.config.RESERVED_SOURCES`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ballast_api.deps import DBDep, SettingsDep, WriteCtxDep, require
from ballast_api.jobs.dispatch import SenderDep
from ballast_api.principal import Principal
from ballast_api.webhooks.schemas import (
    DeliveryRead,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
    WebhookAccepted,
)
from ballast_common.config import WEBHOOK_SOURCE_NAME
from ballast_common.db import UnitOfWork, run_tx_async
from ballast_common.errors import AppError, NotFoundError
from ballast_common.jobs import message_for
from ballast_common.models import (
    CircuitBreakerRow,
    WebhookDelivery,
    WebhookReceipt,
    WebhookSubscription,
)
from ballast_common.security import Permission
from ballast_common.webhooks import deliveries, inbound
from ballast_common.webhooks.signing import verify

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, Depends(require(Permission.WEBHOOKS_ADMIN))]


class PayloadTooLarge(AppError):
    default_code = "payload_too_large"
    default_status = 413


# --------------------------------------------------------------------- subscriptions


def _circuits(uow: UnitOfWork, ids: list[uuid.UUID]) -> dict[str, str]:
    names = [deliveries.breaker_key(i) for i in ids]
    rows = uow.session.execute(
        select(CircuitBreakerRow.name, CircuitBreakerRow.state).where(
            CircuitBreakerRow.name.in_(names)
        )
    ).all()
    return {str(name): str(state) for name, state in rows}


def _read(sub: WebhookSubscription, circuits: dict[str, str]) -> SubscriptionRead:
    read = SubscriptionRead.model_validate(sub)
    read.circuit = circuits.get(deliveries.breaker_key(sub.id), "closed")
    return read


@router.post("/subscriptions", response_model=SubscriptionCreated, status_code=201)
async def create_subscription(
    body: SubscriptionCreate,
    principal: Admin,
    db: DBDep,
    ctx: WriteCtxDep,
    settings: SettingsDep,
) -> SubscriptionCreated:
    """Subscribe an endpoint to events; the answer carries its signing secret once
    (the database holds it sealed)."""
    key = deliveries.secret_key(settings)

    def work(uow: UnitOfWork) -> SubscriptionCreated:
        sub, secret = deliveries.create_subscription(
            uow,
            url=str(body.url),
            events=list(body.events),
            description=body.description,
            created_by=principal.user_id,
            sealing_key=key,
        )
        return SubscriptionCreated(
            **_read(sub, {}).model_dump(exclude={"secret"}), secret=secret
        )

    return await run_tx_async(work, db=db, ctx=ctx)


@router.get("/subscriptions", response_model=list[SubscriptionRead])
async def list_subscriptions(_admin: Admin, db: DBDep) -> list[SubscriptionRead]:
    """Every subscription (without secrets), with the state of its endpoint's circuit."""

    def work(uow: UnitOfWork) -> list[SubscriptionRead]:
        subs = list(
            uow.session.execute(
                select(WebhookSubscription).order_by(WebhookSubscription.created_at)
            ).scalars()
        )
        circuits = _circuits(uow, [s.id for s in subs])
        return [_read(s, circuits) for s in subs]

    return await run_tx_async(work, db=db)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(
    subscription_id: uuid.UUID, _admin: Admin, db: DBDep, ctx: WriteCtxDep
) -> Response:
    """Remove a subscription and its delivery log."""
    await run_tx_async(
        lambda uow: deliveries.delete_subscription(uow, subscription_id), db=db, ctx=ctx
    )
    return Response(status_code=204)


@router.get("/deliveries", response_model=list[DeliveryRead])
async def list_deliveries(
    _admin: Admin,
    db: DBDep,
    subscription_id: uuid.UUID | None = None,
    status: Annotated[str | None, Query(pattern="^(PENDING|SUCCEEDED|FAILED)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryRead]:
    """The delivery log, newest first."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc())
    if subscription_id is not None:
        query = query.where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)

    def work(uow: UnitOfWork) -> list[DeliveryRead]:
        rows = uow.session.execute(query.limit(limit)).scalars()
        return [DeliveryRead.model_validate(r) for r in rows]

    return await run_tx_async(work, db=db)


@router.post(
    "/deliveries/{delivery_id}/redeliver", response_model=DeliveryRead, status_code=202
)
async def redeliver(
    delivery_id: uuid.UUID, _admin: Admin, db: DBDep, ctx: WriteCtxDep, send: SenderDep
) -> DeliveryRead:
    """Send a delivery again (same webhook-id) with a fresh budget of attempts."""

    def work(uow: UnitOfWork) -> DeliveryRead:
        delivery, job = deliveries.redeliver(uow, delivery_id)
        message = message_for(job)
        uow.after_commit(lambda: send(message))
        return DeliveryRead.model_validate(delivery)

    read = await run_tx_async(work, db=db, ctx=ctx)
    await send.settle()
    return read


# --------------------------------------------------------------------------- inbound


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit // 1024} KiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/{source}",
    response_model=WebhookAccepted,
    status_code=202,
    responses={200: {"model": WebhookAccepted, "description": "A known webhook id."}},
)
async def receive(
    source: str,
    request: Request,
    response: Response,
    db: DBDep,
    config: SettingsDep,
    ctx: WriteCtxDep,
    send: SenderDep,
) -> WebhookAccepted:
    """Accept a signed webhook (Standard Webhooks) and process it in the background."""
    settings = config.webhooks.sources.get(source)
    if (
        not WEBHOOK_SOURCE_NAME.fullmatch(source)
        or settings is None
        or not settings.enabled
    ):
        raise NotFoundError("unknown webhook source")
    body = await _read_body(request, config.webhooks.max_body_kb * 1024)
    verify(settings.secret.get_secret_value(), body, request.headers)
    payload = inbound.parse_payload(body)
    webhook_id = request.headers["webhook-id"]

    def work(uow: UnitOfWork) -> inbound.Accepted:
        accepted = inbound.accept(
            uow,
            source=source,
            webhook_id=webhook_id,
            payload=payload,
            ttl_s=config.webhooks.replay_ttl_s,
        )
        if accepted.job is not None:
            message = message_for(accepted.job)
            uow.after_commit(lambda: send(message))
        return accepted

    try:
        accepted = await run_tx_async(work, db=db, ctx=ctx)
    except IntegrityError:
        # The same webhook id committed concurrently: that one is processed.
        accepted = await run_tx_async(
            lambda uow: _known(uow, source, webhook_id), db=db
        )
    if accepted.duplicate:
        response.status_code = 200
        return WebhookAccepted(status="duplicate", id=accepted.receipt_id)
    await send.settle()
    return WebhookAccepted(status="accepted", id=accepted.receipt_id)


def _known(uow: UnitOfWork, source: str, webhook_id: str) -> inbound.Accepted:
    found = uow.session.execute(
        select(WebhookReceipt.id).where(
            WebhookReceipt.source == source, WebhookReceipt.webhook_id == webhook_id
        )
    ).scalar_one()
    return inbound.Accepted(found, True, None)
