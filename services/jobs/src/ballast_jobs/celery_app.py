"""The Celery application of the workers (`celery -A ballast_jobs.celery_app`)."""

from __future__ import annotations

from celery import Celery

app = Celery("ballast_jobs")
# Lazy: the settings module (and so the configuration) is read on first use.
app.config_from_object("ballast_jobs.celeryconfig")

# Worker-process wiring (database per process, sweeper, metrics) lives in signals.
import ballast_jobs.signals  # noqa: E402, F401
