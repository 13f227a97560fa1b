"""Background jobs: the shared contract of the api, the workers and the ui.

The `jobs` row is the truth; a Celery message is only a wake-up call carrying the job
id. `enqueue` adds the row (PENDING) in the caller's transaction and sends the message
*after commit* (`uow.after_commit`), so a worker never sees a job that is not there. A
job that is not due yet (``scheduled_at`` in the future, unfinished ``depends_on``) is
not sent at all: the worker's sweeper sends it when it becomes due. Because the sweeper
also re-sends jobs whose message went missing (an api killed between commit and send)
and jobs whose worker died (no heartbeat for ``lease_s``), delivery does not depend on
the broker keeping unacknowledged messages — the same guarantees hold on the embedded
filesystem transport and on Redis.

Life cycle::

    PENDING --claim--> RUNNING --> COMPLETED | FAILED | CANCELLED
       ^                  |  (transient error, retries left: PENDING again, later)
       +--- retry() ------+-- from FAILED / CANCELLED

This package imports no Celery: senders are plain callables (`Sender`), so the api and
the workers share it without importing each other. Its parts: `contract` (statuses,
requests, views, messages), `registry` (the tasks and their parameters), `lifecycle`
(enqueue, transitions, cancel, retry) and `broker` (settings, publishing).
"""

from __future__ import annotations

# Imported last: it builds on the modules above.
from ballast_common.jobs import schedules
from ballast_common.jobs.broker import (
    broker_priority,
    broker_settings,
    broker_url,
    send_job,
)
from ballast_common.jobs.contract import (
    MAX_PRIORITY,
    QUEUES,
    RETRYABLE,
    TERMINAL,
    JobCreate,
    JobMessage,
    JobStatus,
    JobView,
    Sender,
    job_dict,
    message_for,
)
from ballast_common.jobs.lifecycle import (
    due_at,
    enqueue,
    fail,
    get_result,
    is_due,
    request_cancel,
    retry,
    retry_backoff,
    transition,
    unmet_dependencies,
)
from ballast_common.jobs.registry import (
    SUGGESTED_ACTIONS,
    TASKS,
    BootstrapParams,
    DatasetImportParams,
    SleepParams,
    TaskSpec,
    suggested_action,
    validate_params,
)
from ballast_common.jobs.repository import JobRepository

__all__ = [
    "MAX_PRIORITY",
    "QUEUES",
    "RETRYABLE",
    "SUGGESTED_ACTIONS",
    "TASKS",
    "TERMINAL",
    "BootstrapParams",
    "DatasetImportParams",
    "JobCreate",
    "JobMessage",
    "JobRepository",
    "JobStatus",
    "JobView",
    "Sender",
    "SleepParams",
    "TaskSpec",
    "broker_priority",
    "broker_settings",
    "broker_url",
    "due_at",
    "enqueue",
    "fail",
    "get_result",
    "is_due",
    "job_dict",
    "message_for",
    "request_cancel",
    "retry",
    "retry_backoff",
    "schedules",
    "send_job",
    "suggested_action",
    "transition",
    "unmet_dependencies",
    "validate_params",
]
