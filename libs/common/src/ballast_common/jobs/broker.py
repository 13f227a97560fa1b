"""Where job messages go: the broker's settings and publishing one message (Celery
`send_task` by name; the Celery app comes from the caller, so this imports no Celery).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ballast_common import brokerfs
from ballast_common.config import AppConfig
from ballast_common.jobs.contract import MAX_PRIORITY, JobMessage


def broker_url(config: AppConfig) -> str | None:
    """The Redis broker: ``jobs.broker_url``, else ``redis_url``; None: embedded."""
    return config.jobs.broker_url or config.redis_url or None


def broker_settings(config: AppConfig) -> dict[str, Any]:
    """Celery broker settings from the configuration, shared by the api and the workers.

    Redis when ``jobs.broker_url`` (``BALLAST_JOBS__BROKER_URL``) or else ``redis_url``
    (``BALLAST_REDIS_URL``) is set; otherwise the embedded broker-free kombu filesystem
    transport under ``paths.data_dir/broker`` (no server; ~50 ms latency at a 0.05 s
    polling interval, measured on this platform).
    """
    jobs = config.jobs
    url = broker_url(config)
    if url:
        options: dict[str, Any] = {
            # Longer than the longest task (soft limit + cancel grace) so Redis never
            # hands a running task's message to a second worker; lost workers are
            # detected by their job's heartbeat instead (see module docstring).
            "visibility_timeout": 2 * jobs.soft_time_limit + 3600,
            # Priorities 0..9 become ten Redis lists; lower step = consumed first.
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "sep": ":",
            "queue_order_strategy": "priority",
        }
        return {"broker_url": url, "broker_transport_options": options}
    brokerfs.install()  # atomic message files (kombu's can be read half-written)
    root = Path(config.paths.data_dir) / "broker"
    queue_dir = root / "queue"
    control = root / "control"
    for folder in (queue_dir, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            # Producers and consumers share one folder: a message file is one message.
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control),
            # Default polling is 1 s per message; 0.05 s gives ~50 ms pickup latency.
            "polling_interval": jobs.polling_interval,
        },
    }


def broker_priority(priority: int, broker_url: str) -> int:
    """Our priority (9 = most urgent) as the broker's: Redis consumes 0 first."""
    return MAX_PRIORITY - priority if broker_url.startswith("redis") else priority


def send_job(
    app: Any, message: JobMessage, *, broker_url: str, cancel_grace_s: float
) -> None:
    """Publish `message` through the Celery `app` (`send_task` by name): one task id per
    send, the job's queue and priority, its soft limit and a hard limit after the grace.
    """
    app.send_task(
        message.name,
        args=[message.job_id],
        task_id=f"{message.job_id}.{uuid.uuid4().hex[:8]}",
        queue=message.queue,
        routing_key=message.queue,
        priority=broker_priority(message.priority, broker_url),
        soft_time_limit=message.timeout,
        time_limit=message.timeout + int(cancel_grace_s) + 30,
    )
