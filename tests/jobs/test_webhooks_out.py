"""Outbound webhooks against a real HTTP receiver: events from audited changes, signed
deliveries, backoff with jitter, the endpoint's breaker (opens, half-opens, closes),
exhaustion, redelivery, once-only; and a real worker delivering a job's completion."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from standardwebhooks import Webhook

from ballast_common import jobs
from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, migrate, run_tx
from ballast_common.models import (
    CircuitBreakerRow,
    Job,
    WebhookDelivery,
    WebhookSubscription,
    utcnow,
)
from ballast_common.models.webhook import system_job
from ballast_common.outbound import Outbound
from ballast_common.sealing import SealError
from ballast_common.webhooks import deliveries
from tests.fixtures.receiver import Receiver, receiver
from tests.jobs.conftest import Stack


@pytest.fixture
def recv() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    db = DB(f"sqlite:///{tmp_path}/out.db")
    migrate(db=db)
    yield db
    db.dispose()


CONFIG = AppConfig(
    outbound={
        "targets": {
            "webhooks": {"breaker_fail_max": 2, "breaker_reset_s": 600, "timeout_s": 5}
        }
    },
    webhooks={
        "delivery_attempts": 4,
        "delivery_backoff_base_s": 1.0,
        "delivery_backoff_max_s": 30.0,
    },
)


@dataclass
class Subscribed:
    id: uuid.UUID
    secret: str  # the plaintext, as the api shows it once


def subscribe(
    db: DB, url: str, events: list[str], config: AppConfig = CONFIG
) -> Subscribed:
    sub, secret = run_tx(
        lambda uow: deliveries.create_subscription(
            uow,
            url=url,
            events=events,
            description="test",
            created_by=None,
            sealing_key=deliveries.secret_key(config),
        ),
        db=db,
    )
    return Subscribed(sub.id, secret)


def finish_job(
    db: DB, name: str = "demo.sleep", status: str = "COMPLETED"
) -> uuid.UUID:
    """A job that ends (audited as the runtime does): emits job.completed / job.failed."""

    def work(uow: UnitOfWork) -> uuid.UUID:
        job = system_job(name, {})
        job.status = "RUNNING"
        uow.session.add(job)
        uow.flush()
        action = "job_completed" if status == "COMPLETED" else "job_failed"
        jobs.transition(uow, job, action, status=status, completed_at=utcnow())
        return job.id

    return run_tx(work, db=db)


def delivery_rows(db: DB) -> list[WebhookDelivery]:
    with db.session() as session:
        rows = list(
            session.execute(
                select(WebhookDelivery).order_by(WebhookDelivery.created_at)
            )
            .scalars()
            .all()
        )
        session.expunge_all()
        return rows


def expire_breaker(db: DB, subscription_id: uuid.UUID) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            update(CircuitBreakerRow)
            .where(CircuitBreakerRow.name == deliveries.breaker_key(subscription_id))
            .values(opened_at=utcnow() - timedelta(seconds=601))
        )


class TestEvents:
    def test_job_end_emits_one_delivery_per_matching_subscription(
        self, db: DB, recv: Receiver
    ) -> None:
        both = subscribe(db, recv.url, ["job.completed", "job.failed"])
        subscribe(db, recv.url, ["project.updated"])
        job_id = finish_job(db)
        finish_job(db, "webhooks.deliver")  # deliveries' own jobs never emit events
        rows = delivery_rows(db)
        assert [(r.subscription_id, r.event_type) for r in rows] == [
            (both.id, "job.completed")
        ]
        assert rows[0].payload["data"]["id"] == str(job_id)
        with db.session() as session:
            job = session.get(Job, rows[0].job_id)
            assert job is not None
            assert (job.name, job.status, job.dispatched_at) == (
                "webhooks.deliver",
                "PENDING",
                None,  # the sweeper sends it
            )
        finish_job(db, status="FAILED")
        assert [r.event_type for r in delivery_rows(db)] == [
            "job.completed",
            "job.failed",
        ]

    def test_project_update_and_dataset_ready(self, db: DB, recv: Receiver) -> None:
        subscribe(db, recv.url, ["project.updated", "dataset.ready"])

        def work(uow: UnitOfWork) -> None:
            uow.audit(
                "update",
                "projects",
                "p1",
                old={"name": "a"},
                new={"name": "b", "version": 2},
            )
            uow.audit("update", "datasets", "d1", new={"status": "IMPORTING"})
            uow.audit("update", "datasets", "d1", new={"status": "READY"})

        run_tx(work, db=db)
        rows = delivery_rows(db)
        assert sorted(
            (r.event_type, json.dumps(r.payload["data"], sort_keys=True)) for r in rows
        ) == [
            ("dataset.ready", '{"id": "d1"}'),
            ("project.updated", '{"changed": ["name"], "id": "p1", "version": 2}'),
        ]


class TestDelivery:
    def test_signed_delivered_once(self, db: DB, recv: Receiver) -> None:
        sub = subscribe(db, recv.url, ["job.completed"])
        finish_job(db)
        (row,) = delivery_rows(db)
        outbound = Outbound(CONFIG, engine=db.engine)
        try:
            done = deliveries.deliver(db, CONFIG, outbound, row.id)
            assert (done.outcome, done.status_code) == ("succeeded", 200)
            # The job message delivered twice (at-least-once): sent once.
            again = deliveries.deliver(db, CONFIG, outbound, row.id)
            assert again.outcome == "skipped"
        finally:
            outbound.close()
        (got,) = recv.requests
        payload = Webhook(sub.secret).verify(got.body, got.headers)
        assert payload["type"] == "job.completed"
        assert got.headers["webhook-id"] == row.message_id
        (after,) = delivery_rows(db)
        assert (after.status, after.attempts, after.last_status_code) == (
            "SUCCEEDED",
            1,
            200,
        )

    def test_the_database_holds_the_secret_sealed(self, db: DB) -> None:
        sub = subscribe(db, "http://127.0.0.1:9/hook", ["job.completed"])
        with db.engine.connect() as conn:
            (stored,) = conn.execute(
                select(WebhookSubscription.secret).where(
                    WebhookSubscription.id == sub.id
                )
            ).one()
            dump = "\n".join(
                str(r) for r in conn.execute(select(WebhookSubscription)).all()
            )
        assert sub.secret.startswith("whsec_")
        assert stored.startswith("sealed:v1:")
        assert sub.secret not in dump
        assert sub.secret.removeprefix("whsec_") not in dump
        # A sealed secret copied onto another row does not open there.
        other = subscribe(db, "http://127.0.0.1:9/other", ["job.completed"])
        with db.engine.begin() as conn:
            conn.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == other.id)
                .values(secret=stored)
            )
        with db.session() as session:
            moved = session.get(WebhookSubscription, other.id)
            assert moved is not None
            with pytest.raises(SealError):
                deliveries.open_secret(CONFIG, moved)

    def test_a_secret_sealed_under_another_key_fails_the_delivery_clearly(
        self, db: DB, recv: Receiver
    ) -> None:
        rotated = CONFIG.model_copy(
            update={
                "security": CONFIG.security.model_copy(
                    update={"secret_key": SecretStr("another-secret-key-0123456789")}
                )
            }
        )
        subscribe(db, recv.url, ["job.completed"], config=rotated)
        finish_job(db)
        (row,) = delivery_rows(db)
        outbound = Outbound(CONFIG, engine=db.engine)
        try:
            done = deliveries.deliver(db, CONFIG, outbound, row.id)
        finally:
            outbound.close()
        assert done.outcome == "failed"
        assert "signing secret cannot be read" in (done.error or "")
        assert recv.requests == []
        (after,) = delivery_rows(db)
        assert after.status == "FAILED"
        assert "security.secret_key changed" in (after.last_error or "")

    def test_failures_back_off_open_the_breaker_then_recover(
        self, db: DB, recv: Receiver
    ) -> None:
        sub = subscribe(db, recv.url, ["job.completed"])
        finish_job(db)
        (row,) = delivery_rows(db)
        outbound = Outbound(CONFIG, engine=db.engine)

        def deliver() -> deliveries.Attempt:
            return deliveries.deliver(db, CONFIG, outbound, row.id)

        try:
            recv.answer(default=500)
            first = deliver()
            assert (first.outcome, first.status_code) == ("retry", 500)
            assert first.retry_after is not None
            assert 0 <= first.retry_after <= 2.0  # full jitter: [0, base * 2**1]
            second = deliver()
            assert second.outcome == "retry"  # the second failure opens the breaker
            sent = recv.count
            third = deliver()
            assert third.outcome == "retry"
            assert "circuit open" in (third.error or "")
            assert third.retry_after is not None
            assert (
                third.retry_after > 500
            )  # waits for the breaker, not just the backoff
            assert recv.count == sent  # not sent while open
            # Half-open: the trial succeeds and closes the circuit.
            expire_breaker(db, sub.id)
            recv.answer(default=200)
            fourth = deliver()
            assert fourth.outcome == "succeeded"
            assert (
                outbound.breaker(
                    "webhooks", deliveries.breaker_key(sub.id)
                ).current_state
                == "closed"
            )
        finally:
            outbound.close()
        (after,) = delivery_rows(db)
        assert (after.status, after.attempts) == ("SUCCEEDED", 4)

    def test_out_of_attempts_then_redelivered(self, db: DB, recv: Receiver) -> None:
        cfg = CONFIG.model_copy(
            update={
                "webhooks": CONFIG.webhooks.model_copy(update={"delivery_attempts": 2})
            }
        )
        subscribe(db, recv.url, ["job.completed"])
        finish_job(db)
        (row,) = delivery_rows(db)
        outbound = Outbound(cfg)  # breakers in memory: this test is about attempts
        try:
            recv.answer(default=410)
            assert deliveries.deliver(db, cfg, outbound, row.id).outcome == "retry"
            done = deliveries.deliver(db, cfg, outbound, row.id)
            assert (done.outcome, done.status_code) == ("failed", 410)
            (failed,) = delivery_rows(db)
            assert (failed.status, failed.attempts, failed.last_error) == (
                "FAILED",
                2,
                "HTTP 410",
            )

            delivery, job = run_tx(lambda uow: deliveries.redeliver(uow, row.id), db=db)
            assert (delivery.status, delivery.attempts, job.name) == (
                "PENDING",
                0,
                "webhooks.deliver",
            )
            recv.answer(default=204)
            assert deliveries.deliver(db, cfg, outbound, row.id).outcome == "succeeded"
        finally:
            outbound.close()
        ids = {r.headers["webhook-id"] for r in recv.requests}
        assert ids == {row.message_id}  # the receiver can dedupe the redelivery

    def test_a_disabled_or_deleted_subscription_is_not_sent(
        self, db: DB, recv: Receiver
    ) -> None:
        sub = subscribe(db, recv.url, ["job.completed"])
        finish_job(db)
        finish_job(db)
        first, second = delivery_rows(db)
        with db.engine.begin() as conn:
            conn.execute(update(WebhookSubscription).values(enabled=False))
        outbound = Outbound(CONFIG)
        try:
            assert (
                deliveries.deliver(db, CONFIG, outbound, first.id).outcome == "failed"
            )
            run_tx(lambda uow: deliveries.delete_subscription(uow, sub.id), db=db)
            assert (
                deliveries.deliver(db, CONFIG, outbound, second.id).outcome == "skipped"
            )
        finally:
            outbound.close()
        assert recv.count == 0


@pytest.mark.integration
def test_a_worker_delivers_a_job_completion_after_a_failure(
    make_stack: Callable[..., Stack], recv: Receiver
) -> None:
    stack = make_stack(
        BALLAST_WEBHOOKS__DELIVERY_BACKOFF_BASE_S="0.05",
        BALLAST_WEBHOOKS__DELIVERY_BACKOFF_MAX_S="0.2",
    )
    sub = subscribe(stack.db, f"{recv.url}/hook", ["job.completed"])
    recv.answer(503, default=200)
    stack.start_worker(concurrency=1)
    job_id = stack.enqueue("demo.sleep", kwargs={"seconds": 0, "steps": 1})
    stack.wait(job_id)
    got = recv.wait_for(2)
    rows: list[Any] = []
    for _ in range(400):
        rows = delivery_rows(stack.db)
        if rows and rows[0].status == "SUCCEEDED":
            break
        time.sleep(0.05)
    (row,) = rows
    assert (row.status, row.attempts) == ("SUCCEEDED", 2)
    assert {r.headers["webhook-id"] for r in got} == {row.message_id}
    payload = Webhook(sub.secret).verify(got[-1].body, got[-1].headers)
    assert payload["data"]["id"] == str(job_id)
    delivery_job = stack.wait(row.job_id)
    assert delivery_job.status == "COMPLETED"
    assert recv.count == 2
