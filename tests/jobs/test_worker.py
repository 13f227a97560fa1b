"""A real worker process on real Redis and PostgreSQL: the job life cycle end to end."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from ballast_common.db import run_tx
from ballast_common.jobs import JobStatus, request_cancel
from ballast_common.models import Job, utcnow
from tests.jobs.conftest import Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.serial,
]  # serial: a job starts within 1.5 s of its due time


def cancel(stack: Stack, job_id: object) -> None:
    def work(uow: object) -> None:
        job = uow.session.get(Job, job_id, with_for_update=True)  # type: ignore[attr-defined]
        request_cancel(uow, job)  # type: ignore[arg-type]

    run_tx(work, db=stack.db)


def test_enqueue_runs_to_completion_with_progress(shared: Stack) -> None:
    job_id = shared.enqueue(kwargs={"seconds": 1.0, "steps": 20})
    running = shared.wait(job_id, lambda j: 0 < j.progress < 1)
    assert running.status == JobStatus.RUNNING
    assert running.progress_message.startswith("step ")
    done = shared.wait(job_id)
    assert done.status == JobStatus.COMPLETED, done.error_message
    assert done.progress == 1.0
    assert done.attempts == 1
    assert done.started_at is not None
    assert done.completed_at is not None
    assert done.result_ref == f"job:{job_id}"
    assert shared.results(job_id) == [{"slept_s": 1.0, "steps": 20, "attempt": 1}]
    assert shared.audits(job_id, "job_started") == 1
    assert shared.audits(job_id, "job_completed") == 1


def test_cooperative_cancel_stops_the_task(shared: Stack) -> None:
    job_id = shared.enqueue(kwargs={"seconds": 20, "steps": 200})
    shared.wait(job_id, lambda j: j.progress > 0)
    asked = time.monotonic()
    cancel(shared, job_id)
    done = shared.wait(job_id)
    assert done.status == JobStatus.CANCELLED
    # Stopped by the task itself, well before the grace period (1.5 s) is over.
    assert time.monotonic() - asked < 1.5
    assert done.progress < 0.5
    assert shared.results(job_id) == []


def test_uncooperative_job_is_terminated_after_the_grace(shared: Stack) -> None:
    job_id = shared.enqueue(kwargs={"seconds": 30, "steps": 300, "cooperative": False})
    running = shared.wait(job_id, lambda j: j.progress > 0)
    asked = time.monotonic()
    cancel(shared, job_id)
    done = shared.wait(job_id)
    waited = time.monotonic() - asked
    assert done.status == JobStatus.CANCELLED
    assert 1.4 < waited < 6, waited
    assert done.progress_message == "terminated after the cancel grace period"
    # The process that ran it was killed (revoke with terminate) ...
    pid = running.worker_pid
    assert pid is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)
    # ... and its redelivered message does not run the job again.
    time.sleep(1)
    again = shared.job(job_id)
    assert again.status == JobStatus.CANCELLED
    assert again.attempts == 1
    # The worker replaced the killed process and still runs jobs.
    after = shared.enqueue(kwargs={"seconds": 0.1, "steps": 1})
    assert shared.wait(after).status == JobStatus.COMPLETED


def test_transient_errors_retry_with_backoff(shared: Stack) -> None:
    job_id = shared.enqueue(
        kwargs={"seconds": 0.1, "steps": 1, "fail_times": 2},
        retry_delay=0.3,
        max_retries=3,
    )
    done = shared.wait(job_id)
    assert done.status == JobStatus.COMPLETED, done.error_message
    assert (done.retry_count, done.attempts) == (2, 3)
    assert shared.audits(job_id, "job_retry_scheduled") == 2
    # Backoff 0.3 s then 0.6 s: the whole run took at least 0.9 s.
    assert done.completed_at is not None
    assert done.completed_at - done.created_at >= timedelta(seconds=0.9)


def test_retries_run_out_with_a_clear_message(shared: Stack) -> None:
    job_id = shared.enqueue(
        kwargs={"seconds": 0, "steps": 1, "fail_times": 5},
        retry_delay=0.05,
        max_retries=1,
    )
    done = shared.wait(job_id)
    assert done.status == JobStatus.FAILED
    assert done.error_code == "transient_exhausted"
    assert "after 1 retries" in (done.error_message or "")
    assert done.error_action
    assert "retry" in done.error_action
    assert done.trace_id


def test_permanent_failure_has_message_action_and_trace_id(shared: Stack) -> None:
    job_id = shared.enqueue(kwargs={"fail_message": "column 'x' is not numeric"})
    done = shared.wait(job_id)
    assert done.status == JobStatus.FAILED
    assert done.error_code == "invalid_params"
    assert done.error_message == "column 'x' is not numeric"
    assert done.error_action == "Start the job again with corrected parameters."
    assert done.trace_id
    assert len(done.trace_id) == 32
    assert done.retry_count == 0


def test_depends_on_waits_for_the_dependency(shared: Stack) -> None:
    first = shared.enqueue(kwargs={"seconds": 0.6, "steps": 3})
    second = shared.enqueue(kwargs={"seconds": 0, "steps": 1}, depends_on=[first])
    done = shared.wait(second)
    dep = shared.job(first)
    assert done.status == dep.status == JobStatus.COMPLETED
    assert done.started_at is not None
    assert dep.completed_at is not None
    assert done.started_at >= dep.completed_at


def test_failed_dependency_fails_the_dependent(shared: Stack) -> None:
    first = shared.enqueue(kwargs={"fail_message": "boom"})
    second = shared.enqueue(depends_on=[first])
    done = shared.wait(second)
    assert done.status == JobStatus.FAILED
    assert done.error_code == "dependency_failed"
    assert str(first) in (done.error_message or "")
    assert done.attempts == 0


def test_scheduled_job_runs_when_due(shared: Stack) -> None:
    due = utcnow() + timedelta(seconds=1.5)
    job_id = shared.enqueue(kwargs={"seconds": 0, "steps": 1}, scheduled_at=due)
    time.sleep(0.8)
    assert shared.job(job_id).status == JobStatus.PENDING
    done = shared.wait(job_id)
    assert done.status == JobStatus.COMPLETED
    assert done.started_at is not None
    assert due <= done.started_at < due + timedelta(seconds=1.5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    except OSError:
        return False
