"""Sending job messages from the api: Celery `send_task` by name, after commit.

The api imports no task code: it knows task names and queues from
`ballast_common.jobs.TASKS` and talks to the broker configured for the workers.
"""

from __future__ import annotations

import threading
import uuid
from typing import Annotated, Any

from celery import Celery  # type: ignore[import-untyped]
from fastapi import Depends, Request
from sqlalchemy import update

from ballast_common.config import AppConfig
from ballast_common.db import DB
from ballast_common.jobs import JobMessage, Sender, broker_priority, broker_settings
from ballast_common.models import Job
from ballast_common.telemetry import get_logger, log_error

log = get_logger(__name__)


class CelerySender:
    """Sends `JobMessage`s with a producer-only Celery app (no tasks registered)."""

    def __init__(self, config: AppConfig, db: DB) -> None:
        self.config = config
        self.db = db
        settings = broker_settings(config)
        self.broker_url: str = settings["broker_url"]
        self.app = Celery("ballast-api", set_as_current=False)
        self.app.conf.update(
            settings,
            task_serializer="json",
            accept_content=["json"],
            # A broker outage must not hold a request for long: the job row is already
            # committed and the workers' sweeper re-sends it (see ballast_common.jobs).
            broker_connection_timeout=2.0,
            task_publish_retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )

    def __call__(self, message: JobMessage) -> None:
        try:
            self.app.send_task(
                message.name,
                args=[message.job_id],
                task_id=f"{message.job_id}.{uuid.uuid4().hex[:8]}",
                queue=message.queue,
                routing_key=message.queue,
                priority=broker_priority(message.priority, self.broker_url),
                soft_time_limit=message.timeout,
                time_limit=message.timeout + int(self.config.jobs.cancel_grace_s) + 30,
            )
        except Exception as exc:
            # Committed but not sent: clear dispatched_at so the sweeper sends it soon.
            log_error(exc, {"job_id": message.job_id, "stage": "send_task"})
            try:
                with self.db.engine.begin() as conn:
                    conn.execute(
                        update(Job)
                        .where(Job.id == uuid.UUID(message.job_id))
                        .values(dispatched_at=None)
                    )
            except Exception as db_exc:  # the sweeper re-sends after redispatch_after_s
                log_error(db_exc, {"job_id": message.job_id, "stage": "undispatch"})

    def revoke(self, task_id: str, *, terminate: bool = False) -> None:
        try:
            self.app.control.revoke(task_id, terminate=terminate, signal="SIGKILL")
        except Exception as exc:  # the cooperative flag and the sweeper still apply
            log_error(exc, {"task_id": task_id, "stage": "revoke"})

    def close(self) -> None:
        self.app.close()


_lock = threading.Lock()


def get_sender(request: Request) -> Sender:
    """The app's sender, created on first use (the lifespan knows nothing of jobs)."""
    state: Any = request.app.state
    sender: CelerySender | None = getattr(state, "job_sender", None)
    if sender is None:
        with _lock:
            sender = getattr(state, "job_sender", None)
            if sender is None:
                sender = CelerySender(state.config, state.db)
                state.job_sender = sender
    return sender


SenderDep = Annotated[Sender, Depends(get_sender)]
