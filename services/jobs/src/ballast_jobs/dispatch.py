"""Sending job messages and revocations from the workers (the sweeper)."""

from __future__ import annotations

import uuid
from typing import Any

from ballast_common.config import AppConfig
from ballast_common.jobs import JobMessage, broker_priority


class WorkerSender:
    """`send_task` by name through the worker's own Celery app."""

    def __init__(self, app: Any, config: AppConfig) -> None:
        self.app = app
        self.config = config
        self.broker_url = str(app.conf.broker_url or "")

    def __call__(self, message: JobMessage) -> None:
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

    def terminate(self, task_id: str) -> None:
        """Kill the process running `task_id`, wherever it runs (broadcast)."""
        self.app.control.revoke(task_id, terminate=True, signal="SIGKILL")
