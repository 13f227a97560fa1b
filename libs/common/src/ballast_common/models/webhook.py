"""Webhooks: inbound receipts (replay store and dead letters), outbound subscriptions and
their delivery log, and the shared state of circuit breakers.

Outbound events come from the audit trail: every effective write adds an audit row in
its own transaction, so a `before_flush` hook that turns the interesting ones
(`job.completed`, `job.failed`, `project.updated`, `dataset.ready`) into delivery rows
and their jobs commits them atomically with the change -- whoever writes (api, worker,
sweeper, CLI). It acts like a database trigger; the worker's sweeper sends the jobs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from ballast_common.models.audit import AuditLog
from ballast_common.models.base import Model, Timestamps, UUIDPk, utcnow
from ballast_common.models.job import Job

# Events a subscription may name.
WEBHOOK_EVENTS = ("job.completed", "job.failed", "project.updated", "dataset.ready")
# The task that sends one delivery (ballast_jobs.tasks.webhooks).
DELIVER_TASK = "webhooks.deliver"
PROCESS_TASK = "webhooks.process"


class WebhookReceipt(UUIDPk, Model):
    """One inbound webhook, verified and accepted: the replay store (unique per source
    and webhook id until `expires_at`) and, when processing failed, a dead letter."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        UniqueConstraint("source", "webhook_id", name="uq_webhook_receipts_source_id"),
        Index("ix_webhook_receipts_status_received_at", "status", "received_at"),
    )

    source: Mapped[str] = mapped_column(String(64))
    # The sender's `webhook-id` (the same on each of its retries).
    webhook_id: Mapped[str] = mapped_column(String(200))
    # The payload's "type", if it has one.
    event_type: Mapped[str | None] = mapped_column(String(200), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # RECEIVED (queued), PROCESSED, FAILED (a dead letter: `ballast webhooks replay`).
    status: Mapped[str] = mapped_column(String(16), default="RECEIVED")
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Processed receipts are forgotten after this (dead letters are kept).
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookSubscription(UUIDPk, Timestamps, Model):
    """An admin's endpoint for outbound events."""

    __tablename__ = "webhook_subscriptions"

    url: Mapped[str] = mapped_column(String(2000))
    # Event types delivered (WEBHOOK_EVENTS).
    events: Mapped[list[Any]] = mapped_column(default=list)
    # Standard Webhooks signing secret (whsec_...), shown once on creation.
    secret: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class WebhookDelivery(UUIDPk, Model):
    """One event for one subscription, and how sending it went (the delivery log)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_subscription_created",
            "subscription_id",
            "created_at",
        ),
        Index("ix_webhook_deliveries_status_created", "status", "created_at"),
    )

    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(String(64))
    # The `webhook-id` sent: the same on every attempt and redelivery (receivers dedupe).
    message_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # PENDING, SUCCEEDED, FAILED (attempts exhausted; redeliver by hand).
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    attempts: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class CircuitBreakerRow(Model):
    """The state of one circuit breaker, shared by every process (pybreaker storage)."""

    __tablename__ = "circuit_breakers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="closed")
    fail_counter: Mapped[int] = mapped_column(default=0)
    success_counter: Mapped[int] = mapped_column(default=0)
    opened_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def system_job(name: str, kwargs: dict[str, Any], **values: Any) -> Job:
    """A job row for an internal task (not in the user-facing registry); sent by the
    caller after commit or, with `dispatched_at` None, by the workers' sweeper."""
    values = {
        "queue": "default",
        "priority": 5,
        "timeout": 120,
        # The task decides about its retries itself (with jitter, within its budget).
        "max_retries": 10_000,
        "retry_delay": 1.0,
        "dispatched_at": None,
        **values,
    }
    return Job(
        id=uuid.uuid4(),
        name=name,
        args=[],
        kwargs=kwargs,
        retry_count=0,
        depends_on=[],
        tags=["webhooks"],
        status="PENDING",
        progress=0.0,
        progress_message="",
        attempts=0,
        lost_runs=0,
        version=1,
        **values,
    )


def _event_of(session: Session, row: AuditLog) -> tuple[str, dict[str, Any]] | None:
    """The outbound event an audit row stands for, if any: (type, data)."""
    new = row.new_values or {}
    if row.resource_type == "jobs" and row.action in ("job_completed", "job_failed"):
        try:
            job = session.get(Job, uuid.UUID(row.resource_id))
        except ValueError:
            return None
        if job is None or job.name.startswith("webhooks."):
            return None  # no events about event deliveries (no loops)
        data = {
            "id": str(job.id),
            "name": job.name,
            "status": job.status,
            "error_code": job.error_code,
        }
        return (
            "job.completed" if row.action == "job_completed" else "job.failed"
        ), data
    if row.resource_type == "projects" and row.action == "update":
        changed = sorted(k for k in new if k not in ("version", "updated_at"))
        return "project.updated", {
            "id": row.resource_id,
            "changed": changed,
            "version": new.get("version"),
        }
    if (
        row.resource_type == "datasets"
        and row.action == "update"
        and new.get("status") == "READY"
    ):
        return "dataset.ready", {"id": row.resource_id}
    return None


@event.listens_for(Session, "before_flush")
def _emit_webhook_events(session: Session, _context: Any, _instances: Any) -> None:
    audits = [o for o in session.new if isinstance(o, AuditLog)]
    if not audits:
        return
    with session.no_autoflush:
        events = [e for e in (_event_of(session, row) for row in audits) if e]
        if not events:
            return
        subscriptions = (
            session.execute(
                select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True))
            )
            .scalars()
            .all()
        )
    now = utcnow()
    for event_type, data in events:
        for sub in subscriptions:
            if event_type not in (sub.events or []):
                continue
            delivery_id = uuid.uuid4()
            message_id = f"msg_{delivery_id.hex}"
            job = system_job(DELIVER_TASK, {"delivery_id": str(delivery_id)})
            session.add(job)
            session.add(
                WebhookDelivery(
                    id=delivery_id,
                    subscription_id=sub.id,
                    event_type=event_type,
                    message_id=message_id,
                    payload={
                        "type": event_type,
                        "timestamp": now.isoformat(),
                        "data": data,
                    },
                    status="PENDING",
                    attempts=0,
                    job_id=job.id,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
