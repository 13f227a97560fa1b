"""Workers die; jobs do not: SIGKILL mid-task -> redelivered -> completed exactly once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from ballast_common.jobs import JobStatus
from tests.jobs.conftest import Stack

pytestmark = pytest.mark.integration


def assert_exactly_once(stack: Stack, job_id: object) -> None:
    done = stack.wait(job_id, timeout=30)  # type: ignore[arg-type]
    assert done.status == JobStatus.COMPLETED, done.error_message
    assert done.attempts == 2
    assert done.lost_runs == 1
    assert stack.audits(job_id, "job_completed") == 1  # type: ignore[arg-type]
    assert stack.audits(job_id, "job_lost_restarted") == 1  # type: ignore[arg-type]
    [result] = stack.results(job_id)  # type: ignore[arg-type]
    assert result["attempt"] == 2


def test_pool_process_sigkilled_mid_task(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start_worker()
    job_id = stack.enqueue(kwargs={"seconds": 2, "steps": 20})
    running = stack.wait(job_id, lambda j: j.progress >= 0.2)
    assert running.worker_pid is not None
    os.kill(running.worker_pid, signal.SIGKILL)
    assert_exactly_once(stack, job_id)


def test_whole_worker_sigkilled_then_restarted(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack()
    worker = stack.start_worker()
    job_id = stack.enqueue(kwargs={"seconds": 2, "steps": 20})
    stack.wait(job_id, lambda j: j.progress >= 0.2)
    worker.kill()
    assert stack.job(job_id).status == JobStatus.RUNNING
    stack.start_worker()
    assert_exactly_once(stack, job_id)


def test_killed_work_goes_ahead_of_a_backlog(make_stack: Callable[..., Stack]) -> None:
    """A job whose worker was SIGKILLed runs again soon after a worker is back, even
    behind a backlog longer than that (its re-sent message is the most urgent)."""
    stack = make_stack()
    worker = stack.start_worker(concurrency=1)
    job_id = stack.enqueue(kwargs={"seconds": 3, "steps": 30})
    stack.wait(job_id, lambda j: j.progress >= 0.1)
    worker.kill()
    # ~90 s of queued work for one process.
    backlog = [stack.enqueue(kwargs={"seconds": 1, "steps": 2}) for _ in range(90)]
    stack.start_worker(concurrency=1)
    ready = time.monotonic()
    done = stack.wait(job_id, timeout=45)
    assert done.status == JobStatus.COMPLETED, done.error_message
    assert time.monotonic() - ready < 30
    assert done.lost_runs == 1
    assert stack.audits(job_id, "job_lost_restarted") == 1
    waiting = sum(stack.job(b).status == JobStatus.PENDING for b in backlog)
    assert waiting > 50  # it did not wait for the backlog
