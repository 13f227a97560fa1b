"""Sending job messages from the api: Celery `send_task` by name, after commit.

The api imports no task code: it knows task names and queues from
`ballast_common.jobs.TASKS` and talks to the broker configured for the workers.

Publishing never runs on the event loop: a broker that refuses connections or hangs
would stall every request of the process. Messages go through a small thread pool; a
request waits for its own messages at most `PUBLISH_WAIT_S` (without blocking the loop)
and then answers anyway: the job row is committed, and a message that fails (or never
leaves) is re-sent by the workers' sweeper, like one lost by an api killed after commit.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy import update

from ballast_common.config import AppConfig
from ballast_common.db import DB
from ballast_common.jobs import JobMessage, broker_settings, send_job
from ballast_common.models import Job
from ballast_common.telemetry import get_logger, log_error

log = get_logger(__name__)

# Seconds a request waits for its messages to reach the broker before answering anyway.
PUBLISH_WAIT_S = 0.5
# Threads that publish; messages beyond MAX_IN_FLIGHT are left to the sweeper.
PUBLISH_THREADS = 4
MAX_IN_FLIGHT = 256
# Socket timeouts (in seconds) towards Redis: a hung broker frees the thread again.
_REDIS_TIMEOUTS = {"socket_connect_timeout": 2.0, "socket_timeout": 3.0}


class CelerySender:
    """Sends `JobMessage`s with a producer-only Celery app (no tasks registered)."""

    def __init__(self, config: AppConfig, db: DB) -> None:
        self.config = config
        self.db = db
        settings = broker_settings(config)
        self.broker_url: str = settings["broker_url"]
        if self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            settings["broker_transport_options"] = {
                **settings.get("broker_transport_options", {}),
                **_REDIS_TIMEOUTS,
            }
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

        self._pool = ThreadPoolExecutor(
            max_workers=PUBLISH_THREADS, thread_name_prefix="ballast-publish"
        )
        self._lock = threading.Lock()
        self._in_flight = 0

    def submit(self, message: JobMessage) -> Future[None] | None:
        """Publish `message` in the background; None when too many are in flight."""
        with self._lock:
            if self._in_flight >= MAX_IN_FLIGHT:
                log.warning("job_publish_deferred", job_id=message.job_id)
                return None
            self._in_flight += 1
        # In a copy of the caller's context: the publish (its span and the trace context
        # in the message's headers) belongs to the enqueuing request's trace, and what a
        # publish leaves attached stays in the copy, not in the pool's thread.
        future = self._pool.submit(
            contextvars.copy_context().run, self._publish, message
        )
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[None]) -> None:
        with self._lock:
            self._in_flight -= 1

    def __call__(self, message: JobMessage) -> None:
        self.submit(message)

    def _publish(self, message: JobMessage) -> None:
        try:
            send_job(
                self.app,
                message,
                broker_url=self.broker_url,
                cancel_grace_s=self.config.jobs.cancel_grace_s,
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
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.app.close()


class RequestSender:
    """The sender one request uses: publishes off the event loop, remembers its
    messages so the request can wait for them briefly (`settle`)."""

    def __init__(self, sender: CelerySender) -> None:
        self.sender = sender
        self.futures: list[Future[None]] = []

    def __call__(self, message: JobMessage) -> None:
        future = self.sender.submit(message)
        if future is not None:
            self.futures.append(future)

    async def settle(self) -> None:
        """Wait up to `PUBLISH_WAIT_S` for this request's messages (never raises).

        With a healthy broker they are sent before the response; during an outage
        the response does not wait for it.
        """
        if self.futures:
            await asyncio.wait(
                [asyncio.wrap_future(f) for f in self.futures],
                timeout=PUBLISH_WAIT_S,
            )


_lock = threading.Lock()


def get_sender(request: Request) -> RequestSender:
    """The app's sender for this request; the shared one is created on first use (the
    lifespan knows nothing of jobs)."""
    state: Any = request.app.state
    sender: CelerySender | None = getattr(state, "job_sender", None)
    if sender is None:
        with _lock:
            sender = getattr(state, "job_sender", None)
            if sender is None:
                sender = CelerySender(state.config, state.db)
                state.job_sender = sender
    return RequestSender(sender)


SenderDep = Annotated[RequestSender, Depends(get_sender)]
