"""Celery settings (lowercase names), built from `AppConfig` when the app first reads
its configuration. Every setting that differs from Celery's default says why.

Ref: https://docs.celeryq.dev/en/stable/userguide/configuration.html
"""

from __future__ import annotations

from kombu.entity import Queue

from ballast_common.config import load_config
from ballast_common.jobs import MAX_PRIORITY, QUEUES, broker_settings

_config = load_config()
_settings = broker_settings(_config)

# Redis in production; the embedded default uses kombu's filesystem transport (no
# server; see ballast_common.jobs.broker_settings for the options).
broker_url = _settings["broker_url"]
broker_transport_options = _settings["broker_transport_options"]
# Keep retrying the broker at start-up (a pod may start before Redis); the default
# changes in Celery 6, so say it explicitly.
broker_connection_retry_on_startup = True

# Task modules to register (the api sends by name and imports none of them).
imports = (
    "ballast_jobs.tasks.demo",
    "ballast_jobs.tasks.datasets",
    "ballast_jobs.tasks.analysis",
    "ballast_jobs.tasks.diag",
    "ballast_jobs.tasks.webhooks",
)

# JSON only: messages carry a job id, never pickled objects.
task_serializer = "json"
accept_content = ["json"]
# Results live in the jobs/job_results tables, written by the task in the same
# transaction as the COMPLETED transition: no Celery result backend.
task_ignore_result = True
result_backend = None

# At-least-once delivery: acknowledge after the task ran, and hand the message back if
# the process running it dies (SIGKILL, OOM). Safe because task bodies are idempotent:
# a job is claimed with a conditional update and completes once (ballast_jobs.runtime).
task_acks_late = True
task_reject_on_worker_lost = True
# A worker reserves one message per process at a time: long jobs do not hold others
# hostage in a busy worker's prefetch buffer.
worker_prefetch_multiplier = 1
# A broker connection loss must not cancel long-running jobs: their messages may be
# redelivered, and the claim makes the duplicate a no-op.
worker_cancel_long_running_tasks_on_connection_loss = False

# Time limits (per job they come with the message from `jobs.timeout`): the soft limit
# raises SoftTimeLimitExceeded in the task (-> FAILED "timeout"); the hard limit kills
# the process a little later if the task ignores it.
task_soft_time_limit = _config.jobs.soft_time_limit
task_time_limit = _config.jobs.soft_time_limit + int(_config.jobs.cancel_grace_s) + 30

# Queues and routes: imports and analyses get their own queues so a burst of one kind
# cannot starve the other; workers choose queues with `ballast jobs worker -Q`.
task_default_queue = "default"
task_queues = tuple(Queue(name, routing_key=name) for name in QUEUES)
task_routes = {
    "datasets.*": {"queue": "imports"},
    "analysis.*": {"queue": "analysis"},
}
# Priorities 0..9 (ours: 9 most urgent; Redis consumes its step 0 first, so the
# senders invert them); the middle is the default.
task_queue_max_priority = MAX_PRIORITY
task_default_priority = MAX_PRIORITY // 2

# Recycle pool processes now and then: pandas/numpy jobs can hold on to memory.
worker_max_tasks_per_child = 200
# Ballast configures logging itself (structlog JSON); Celery must not replace it.
worker_hijack_root_logger = False
# No task events on the broker: progress and state are in the database.
worker_send_task_events = False
