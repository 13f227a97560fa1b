"""The job contract shared by the api, the workers and the ui: statuses, requests and
views (defined in `ballast_common.contracts.jobs`, which the ui imports without the
database) and the message that wakes a worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ballast_common.contracts.jobs import (
    MAX_PRIORITY,
    RETRYABLE,
    TERMINAL,
    JobCreate,
    JobStatus,
    JobView,
)
from ballast_common.db.repository import row_dict
from ballast_common.models import Job

__all__ = [
    "MAX_PRIORITY",
    "QUEUES",
    "RETRYABLE",
    "TERMINAL",
    "JobCreate",
    "JobMessage",
    "JobStatus",
    "JobView",
    "Sender",
    "job_dict",
    "message_for",
]

# Queues, and the queue each task prefix is routed to (celeryconfig.task_routes).
QUEUES: tuple[str, ...] = ("default", "imports", "analysis")


@dataclass(frozen=True)
class JobMessage:
    """What is sent to the broker for one job: its id, by task name, on its queue."""

    job_id: str
    name: str
    queue: str
    priority: int
    timeout: int


# Sends one message (Celery `send_task` by name in the api and the workers).
Sender = Callable[[JobMessage], None]


def message_for(job: Job) -> JobMessage:
    return JobMessage(str(job.id), job.name, job.queue, job.priority, job.timeout)


def job_dict(job: Job) -> dict[str, Any]:
    return row_dict(job)
