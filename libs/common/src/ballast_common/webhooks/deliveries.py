"""Outbound webhooks: subscriptions, signed deliveries, the delivery log, redelivery.

A delivery row and its ``webhooks.deliver`` job are created with the event, in the
transaction of the change (`ballast_common.models.webhook`). The worker sends one
attempt per run through `ballast_common.outbound` (the endpoint's circuit breaker is
shared by every worker); a failed attempt schedules the next run of the same job after
an exponential backoff with full jitter (``webhooks.delivery_*``), an open circuit at
least until it lets a trial through. After ``webhooks.delivery_attempts`` the delivery
is FAILED; an admin may redeliver it (same ``webhook-id``, so receivers dedupe).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork
from ballast_common.errors import NotFoundError, TransientError, ValidationError
from ballast_common.models import Job, WebhookDelivery, WebhookSubscription, utcnow
from ballast_common.models.webhook import DELIVER_TASK, WEBHOOK_EVENTS, system_job
from ballast_common.outbound import (
    BadStatus,
    CircuitOpen,
    Outbound,
    OutboundUnavailable,
    full_jitter_delay,
)
from ballast_common.sealing import SealError, is_sealed, seal, sealing_key, unseal
from ballast_common.telemetry import get_logger
from ballast_common.webhooks.signing import new_secret, sign

log = get_logger(__name__)

PENDING, SUCCEEDED, FAILED = "PENDING", "SUCCEEDED", "FAILED"
TARGET = "webhooks"


def secret_key(config: AppConfig) -> bytes:
    """The key subscription secrets are sealed with (from ``security.secret_key``)."""
    return sealing_key(config, "webhook subscription secrets")


def _seal_context(subscription_id: uuid.UUID) -> str:
    return f"webhook_subscriptions:{subscription_id}"


def open_secret(config: AppConfig, sub: WebhookSubscription) -> str:
    """The signing secret of `sub` (a row of an earlier build may hold it unsealed).

    Raises:
        SealError: the sealed secret does not open (`security.secret_key` changed, or
            the row was altered): the subscription must be created again.
    """
    if not is_sealed(sub.secret):
        return sub.secret
    return unseal(sub.secret, secret_key(config), context=_seal_context(sub.id))


def breaker_key(subscription_id: uuid.UUID) -> str:
    """The circuit breaker of one endpoint (subscription)."""
    return f"webhooks:{subscription_id}"


# --------------------------------------------------------------------- subscriptions


def create_subscription(
    uow: UnitOfWork,
    *,
    url: str,
    events: list[str],
    description: str,
    created_by: uuid.UUID | None,
    sealing_key: bytes,
) -> tuple[WebhookSubscription, str]:
    """Add a subscription with a fresh secret (audited without the secret).

    Returns:
        The subscription, whose row holds the secret sealed under `sealing_key`
        (`secret_key(config)`), and the secret itself, to be shown once.
    """
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown or not events:
        raise ValidationError(
            f"events must be some of {', '.join(WEBHOOK_EVENTS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            details={"fields": ["events"], "known": list(WEBHOOK_EVENTS)},
        )
    now = utcnow()
    sub_id = uuid.uuid4()
    secret = new_secret()
    sub = WebhookSubscription(
        id=sub_id,
        url=url,
        events=sorted(set(events)),
        secret=seal(secret, sealing_key, context=_seal_context(sub_id)),
        description=description,
        enabled=True,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(sub)
    uow.flush()
    uow.audit(
        "create",
        "webhook_subscriptions",
        str(sub.id),
        new={"url": url, "events": sub.events, "description": description},
    )
    return sub, secret


def delete_subscription(uow: UnitOfWork, subscription_id: uuid.UUID) -> None:
    """Remove a subscription and its delivery log (404 if unknown)."""
    sub = uow.session.get(WebhookSubscription, subscription_id)
    if sub is None:
        raise NotFoundError(f"webhook subscription {subscription_id} not found")
    old = {"url": sub.url, "events": sub.events}
    uow.session.delete(sub)
    uow.flush()
    uow.audit("delete", "webhook_subscriptions", str(subscription_id), old=old)


def redeliver(uow: UnitOfWork, delivery_id: uuid.UUID) -> tuple[WebhookDelivery, Job]:
    """Send a delivery again with a fresh attempt budget (a new job, PENDING; the
    caller sends it after commit). 409-free: a pending delivery just gets a new job."""
    delivery = uow.session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update()
    ).scalar_one_or_none()
    if delivery is None:
        raise NotFoundError(f"webhook delivery {delivery_id} not found")
    now = utcnow()
    job = system_job(DELIVER_TASK, {"delivery_id": str(delivery.id)}, dispatched_at=now)
    uow.session.add(job)
    delivery.status = PENDING
    delivery.attempts = 0
    delivery.job_id = job.id
    delivery.next_attempt_at = now
    delivery.completed_at = None
    uow.flush()
    uow.audit(
        "webhook_redelivered",
        "webhook_deliveries",
        str(delivery.id),
        new={"subscription_id": str(delivery.subscription_id)},
    )
    return delivery, job


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Attempt:
    """What one run did: ``succeeded``, ``skipped``, ``retry`` (in `retry_after`
    seconds) or ``failed`` (out of attempts)."""

    outcome: str
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def _record(db: DB, delivery_id: uuid.UUID, **values: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(**values)
        )


def deliver(
    db: DB, config: AppConfig, outbound: Outbound, delivery_id: uuid.UUID
) -> Attempt:
    """Make one attempt of a delivery and record it in the delivery log."""
    with db.session() as session:
        row = session.execute(
            select(WebhookDelivery, WebhookSubscription)
            .join(WebhookSubscription)
            .where(WebhookDelivery.id == delivery_id)
        ).first()
        if row is None:
            return Attempt("skipped", error="the delivery or its subscription is gone")
        delivery, sub = row
        if delivery.status != PENDING:
            return Attempt(
                "skipped", error=f"the delivery is {delivery.status.lower()}"
            )
        payload, message_id, attempts = (
            delivery.payload,
            delivery.message_id,
            delivery.attempts,
        )
        url, enabled, sub_id = sub.url, sub.enabled, sub.id
        try:
            secret = open_secret(config, sub)
        except SealError as exc:
            secret = None
            unreadable = str(exc)
    now = utcnow()
    if secret is None:
        why = f"the subscription's signing secret cannot be read: {unreadable}"
        _record(db, delivery_id, status=FAILED, completed_at=now, last_error=why)
        log.error("webhook_secret_unreadable", subscription_id=str(sub_id))
        return Attempt("failed", error=why)
    if not enabled:
        _record(
            db,
            delivery_id,
            status=FAILED,
            completed_at=now,
            last_error="the subscription is disabled",
        )
        return Attempt("failed", error="the subscription is disabled")
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
    headers = {
        **sign(secret, message_id, body, now),
        "content-type": "application/json",
        "user-agent": "Ballast-Webhooks/1",
    }
    status_code: int | None = None
    error: str | None = None
    retry_floor = 0.0
    try:
        response = outbound.request(
            TARGET,
            "POST",
            url,
            key=breaker_key(sub_id),
            # One attempt per run: the next one is a scheduled run of the job.
            attempts=1,
            content=body,
            headers=headers,
        )
        status_code = response.status_code
        if 200 <= status_code < 300:
            _record(
                db,
                delivery_id,
                status=SUCCEEDED,
                attempts=attempts + 1,
                last_status_code=status_code,
                last_error=None,
                last_attempt_at=now,
                next_attempt_at=None,
                completed_at=utcnow(),
            )
            return Attempt("succeeded", status_code=status_code)
        error = f"HTTP {status_code}"
    except CircuitOpen as exc:
        error = exc.message
        retry_floor = exc.retry_after or 0.0
    except OutboundUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, BadStatus):
            status_code = cause.response.status_code
        error = exc.message
    except TransientError as exc:  # the breaker's shared state (Redis) is down
        error = exc.message
    done = attempts + 1
    cfg = config.webhooks
    if done >= cfg.delivery_attempts:
        _record(
            db,
            delivery_id,
            status=FAILED,
            attempts=done,
            last_status_code=status_code,
            last_error=error,
            last_attempt_at=now,
            next_attempt_at=None,
            completed_at=utcnow(),
        )
        return Attempt("failed", status_code=status_code, error=error)
    delay = max(
        retry_floor,
        full_jitter_delay(
            done, base=cfg.delivery_backoff_base_s, cap=cfg.delivery_backoff_max_s
        ),
    )
    _record(
        db,
        delivery_id,
        attempts=done,
        last_status_code=status_code,
        last_error=error,
        last_attempt_at=now,
        next_attempt_at=now + timedelta(seconds=delay),
    )
    return Attempt("retry", status_code=status_code, error=error, retry_after=delay)
