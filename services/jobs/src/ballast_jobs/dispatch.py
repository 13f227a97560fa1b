"""Sending job messages and revocations from the workers (the sweeper)."""

from __future__ import annotations

from typing import Any

from ballast_common.config import AppConfig
from ballast_common.jobs import JobMessage, send_job


class WorkerSender:
    """`send_task` by name through the worker's own Celery app."""

    def __init__(self, app: Any, config: AppConfig) -> None:
        self.app = app
        self.config = config
        self.broker_url = str(app.conf.broker_url or "")

    def __call__(self, message: JobMessage) -> None:
        send_job(
            self.app,
            message,
            broker_url=self.broker_url,
            cancel_grace_s=self.config.jobs.cancel_grace_s,
        )

    def terminate(self, task_id: str) -> None:
        """Kill the process running `task_id`, wherever it runs (broadcast)."""
        self.app.control.revoke(task_id, terminate=True, signal="SIGKILL")
