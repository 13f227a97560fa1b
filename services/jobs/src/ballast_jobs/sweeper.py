"""The sweeper: a thread in each worker's main process that keeps jobs moving.

Every `sweep_interval_s` it
- sends PENDING jobs that became due (scheduled_at reached, dependencies completed,
  automatic retries whose backoff is over) and re-sends those whose message went
  missing (not started `redispatch_after_s` after it was sent);
- fails PENDING jobs whose dependency failed or was cancelled;
- re-sends RUNNING jobs whose heartbeat stopped (their worker died: the next claim
  takes them over) once per lost run, at the highest priority so that interrupted work
  goes ahead of a backlog of new work; only if that message too goes unanswered for
  `redispatch_after_s` is it sent again (a lost job is not re-sent on every pass);
- terminates jobs whose cancel grace period or time limit is over;
- starts the jobs of recurring schedules whose tick has come (`ballast_common.jobs.
  schedules.run_due`: each tick once across every sweeper, one run after downtime).

Several workers may sweep at once: every change is a conditional update on a row
locked with SKIP LOCKED (PostgreSQL) or under SQLite's single writer, and a duplicate
message is harmless (the claim ignores it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from ballast_common import jobs
from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, run_tx
from ballast_common.jobs import MAX_PRIORITY, JobMessage, JobStatus, schedules
from ballast_common.jobs.repository import JobRepository
from ballast_common.models import utcnow
from ballast_common.telemetry import get_logger, log_error

log = get_logger(__name__)
BATCH = 500
# Handled schedule ticks older than their retention are pruned this often (in seconds).
PRUNE_EVERY_S = 3600.0


@dataclass
class SweepStats:
    sent: int = 0
    resent_lost: int = 0
    dependency_failed: int = 0
    terminated: int = 0
    timed_out: int = 0
    scheduled: int = 0
    terminate_ids: list[str] = field(default_factory=list)


def sweep(
    db: DB,
    config: AppConfig,
    send: Callable[[JobMessage], None],
    terminate: Callable[[str], None],
    now: datetime | None = None,
) -> SweepStats:
    """One pass (see the module docstring); messages go out after commit."""
    cfg = config.jobs
    now = now or utcnow()
    stats = SweepStats()

    def pending(uow: UnitOfWork) -> None:
        resend_before = now - timedelta(seconds=cfg.redispatch_after_s)
        for job in JobRepository(uow.session).due_unsent(now, resend_before, BATCH):
            blocking = jobs.unmet_dependencies(uow, job)
            dead = [d for d in blocking if d.status in jobs.RETRYABLE]
            if dead:
                jobs.fail(
                    uow,
                    job,
                    "dependency_failed",
                    f"dependency {dead[0].id} ({dead[0].name}) is "
                    f"{dead[0].status.lower()}",
                    at=now,
                )
                stats.dependency_failed += 1
                continue
            if blocking:
                continue
            job.dispatched_at = now
            message = jobs.message_for(job)
            uow.after_commit(partial(send, message))
            stats.sent += 1

    def running(uow: UnitOfWork) -> None:
        stale = now - timedelta(seconds=cfg.lease_s)
        resend_before = now - timedelta(seconds=cfg.redispatch_after_s)
        grace = now - timedelta(seconds=cfg.cancel_grace_s)
        # Read without locks (heartbeats update these rows all the time), then lock
        # and re-check only the few that need something done.
        repo = JobRepository(uow.session)
        for job_id in repo.running_ids(BATCH):
            job = repo.lock_running(job_id)
            if job is None:
                continue
            overdue = job.started_at is not None and job.started_at < now - timedelta(
                seconds=job.timeout + cfg.cancel_grace_s + 60
            )
            if job.cancel_requested_at is not None and job.cancel_requested_at < grace:
                jobs.transition(
                    uow,
                    job,
                    "job_cancelled",
                    status=JobStatus.CANCELLED,
                    completed_at=now,
                    progress_message="terminated after the cancel grace period",
                )
                stats.terminated += 1
            elif overdue:
                jobs.fail(
                    uow,
                    job,
                    "timeout",
                    f"the job ran past its time limit ({job.timeout} s)",
                    at=now,
                )
                stats.timed_out += 1
            else:
                # Lost: no heartbeat for a lease. Re-sent once for this run (the last
                # message predates its start), again only if that one went missing.
                lost = job.heartbeat_at is None or job.heartbeat_at < stale
                unsent = (
                    job.dispatched_at is None
                    or job.started_at is None
                    or job.dispatched_at < job.started_at
                    or job.dispatched_at < resend_before
                )
                if lost and unsent:
                    job.dispatched_at = now
                    # Interrupted work first: ahead of every queued message.
                    message = replace(jobs.message_for(job), priority=MAX_PRIORITY)
                    uow.after_commit(partial(send, message))
                    stats.resent_lost += 1
                continue
            if job.task_id:
                stats.terminate_ids.append(job.task_id)

    try:
        # Before `pending`: a schedule's job is sent after its own commit already.
        stats.scheduled = len(schedules.run_due(db, send, now=now))
    except Exception as exc:  # the rest of the pass goes on; the next pass retries
        log_error(exc, {"stage": "schedules"})
    run_tx(pending, db=db)
    run_tx(running, db=db)
    for task_id in stats.terminate_ids:
        try:
            terminate(task_id)
        except Exception as exc:  # the row is final; the claim ignores redeliveries
            log_error(exc, {"task_id": task_id, "stage": "terminate"})
    return stats


class Sweeper(threading.Thread):
    """Runs `sweep` every `sweep_interval_s` until stopped."""

    def __init__(
        self,
        db: DB,
        config: AppConfig,
        send: Callable[[JobMessage], None],
        terminate: Callable[[str], None],
        on_pass: Callable[[DB], None] | None = None,
    ) -> None:
        super().__init__(name="ballast-sweeper", daemon=True)
        self.db = db
        self.config = config
        self.send = send
        self.terminate = terminate
        self.on_pass = on_pass
        self.stopped = threading.Event()
        self.passes = 0

    def run(self) -> None:
        interval = self.config.jobs.sweep_interval_s
        pruned_at = 0.0
        while not self.stopped.wait(interval):
            try:
                stats = sweep(self.db, self.config, self.send, self.terminate)
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    schedules.prune_runs(self.db)
                if self.on_pass is not None:
                    self.on_pass(self.db)
                self.passes += 1
                if (
                    stats.sent
                    or stats.resent_lost
                    or stats.terminated
                    or stats.scheduled
                ):
                    log.info("sweep", **{k: v for k, v in vars(stats).items() if v})
            except Exception as exc:  # keep sweeping: the database may be back soon
                log_error(exc, {"stage": "sweep"})

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)
