"""Diagnostics: a bare task (no job row) for the benchmark's baseline round trip."""

from __future__ import annotations

import time

import redis

from ballast_jobs.celery_app import app


def started(redis_url: str, key: str) -> None:
    """Push the wall-clock start time onto a Redis list (the bench reads it)."""
    now = time.time()
    client = redis.Redis.from_url(redis_url)
    try:
        client.rpush(key, repr(now))
    finally:
        client.close()


started_task = app.task(name="diag.started")(started)
