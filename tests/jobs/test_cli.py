"""`ballast jobs list | cancel | retry | worker` as real processes, and the worker's
/metrics, against a real worker on real Redis and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from ballast_common.jobs import JobStatus
from ballast_jobs import cli
from ballast_testing.servers import PostgresServer, RedisServer
from tests.jobs.conftest import Stack, stacks

pytestmark = pytest.mark.integration

BALLAST = Path(sys.executable).with_name("ballast")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def stack(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One stack with a single-process worker, so a second job has to wait in the queue."""
    with stacks(postgres_server, redis_server, tmp_path_factory.mktemp("cli")) as f:
        s = f()
        s.start_worker(concurrency=1)
        yield s


def run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BALLAST), "jobs", *args],
        # The CLI reads the same settings as the stack's worker.
        env={**os.environ, **stack.env},  # noqa: TID251
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def scrape(stack: Stack) -> Samples:
    with urllib.request.urlopen(stack.workers[0].metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(
    predicate: Callable[[], bool],
    what: str,
    show: Callable[[], object] = lambda: None,
    timeout: float = 15,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {show()}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- CLI


def test_every_command_has_help(stack: Stack) -> None:
    # The console script loads the group through the `ballast.cli` entry point ...
    top = run(stack, "--help")
    assert top.returncode == 0, top.stderr
    for command in ("worker", "list", "cancel", "retry"):
        assert command in top.stdout
    # ... and every command explains itself (in-process: --help touches no settings).
    runner = CliRunner()
    for command in ("worker", "list", "cancel", "retry"):
        sub = runner.invoke(cli.app, [command, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "Usage:" in sub.output
    worker = runner.invoke(cli.app, ["worker", "--help"]).output
    assert "--queues" in worker
    assert "--concurrency" in worker


def test_list_cancel_retry(stack: Stack) -> None:
    long = stack.enqueue(kwargs={"seconds": 60, "steps": 600})
    stack.wait(long, lambda j: j.status == JobStatus.RUNNING)
    failed = stack.enqueue(
        priority=9, kwargs={"seconds": 0, "fail_message": "bad input"}
    )

    listed = run(stack, "list", "--status", "RUNNING")
    assert listed.returncode == 0, listed.stderr
    assert str(long) in listed.stdout
    assert str(failed) not in listed.stdout

    cancelled = run(stack, "cancel", str(long))
    assert cancelled.returncode == 0, cancelled.stderr
    assert str(long) in cancelled.stdout
    assert stack.wait(long).status == JobStatus.CANCELLED
    # The single worker process is free again: the failing job runs.
    assert stack.wait(failed).status == JobStatus.FAILED

    out = run(stack, "list", "--status", "FAILED", "--status", "CANCELLED").stdout
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "CANCELLED" in lines[str(long)]
    assert "FAILED" in lines[str(failed)]
    assert "bad input" in lines[str(failed)]

    # A cancelled job runs again with the same id.
    retried = run(stack, "retry", str(long))
    assert retried.returncode == 0, retried.stderr
    job = stack.wait(long, lambda j: j.status == JobStatus.RUNNING)
    assert job.attempts == 2
    stack.cancel(long)
    assert stack.wait(long).status == JobStatus.CANCELLED


def test_bad_input_is_one_clear_line(stack: Stack) -> None:
    proc = run(stack, "cancel", "not-a-job")
    assert (proc.returncode, proc.stderr) == (1, "error: not a job id: 'not-a-job'\n")
    done = stack.enqueue(kwargs={"seconds": 0, "steps": 1})
    assert stack.wait(done).status == JobStatus.COMPLETED
    proc = run(stack, "retry", str(done))
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: only failed or cancelled jobs can be retried; "
        f"job {done} is completed\n"
    )
    # Option values are checked before anything else happens.
    bad = CliRunner().invoke(cli.app, ["list", "--status", "DONE"])
    assert bad.exit_code == 2
    assert "Invalid value" in bad.output


# --------------------------------------------------------------------------- metrics


def test_worker_metrics(stack: Stack) -> None:
    before = scrape(stack)
    # Queue depth: the single worker process is busy, so the next job waits.
    busy = stack.enqueue(kwargs={"seconds": 60, "steps": 600})
    stack.wait(busy, lambda j: j.status == JobStatus.RUNNING)
    waiting = [stack.enqueue(kwargs={"seconds": 0.2, "steps": 2}) for _ in range(2)]

    def gauges() -> tuple[float, ...]:
        # Counted by the sweeper every metrics_refresh_s (0.2 s here), not per scrape.
        now = scrape(stack)
        return (
            metric(now, "ballast_jobs_queue_depth", queue="default"),
            metric(now, "ballast_jobs_queue_depth", queue="imports"),
            metric(now, "ballast_jobs", status="RUNNING"),
            metric(now, "ballast_jobs", status="PENDING"),
        )

    wait_for(lambda: gauges() == (2, 0, 1, 2), "queue and status gauges", gauges)
    age = scrape(stack).get(("ballast_jobs_metrics_age_seconds", ()))
    assert age is not None
    assert age < 60

    # A transient failure retried once, then success.
    flaky = stack.enqueue(
        kwargs={"seconds": 0.1, "steps": 1, "fail_times": 1}, retry_delay=0.1
    )
    stack.cancel(busy)
    for job_id in (*waiting, flaky):
        assert stack.wait(job_id).status == JobStatus.COMPLETED
    assert stack.wait(busy).status == JobStatus.CANCELLED

    def counts() -> tuple[float, float]:
        now = scrape(stack)
        done = (
            "ballast_job_duration_seconds_count",
            {"task": "demo.sleep", "status": "COMPLETED"},
        )
        retried = ("ballast_job_retries_total", {"task": "demo.sleep"})
        return (
            metric(now, done[0], **done[1]) - metric(before, done[0], **done[1]),
            metric(now, retried[0], **retried[1])
            - metric(before, retried[0], **retried[1]),
        )

    # Three more completed runs (two waiting jobs and the flaky one), one retry.
    wait_for(lambda: counts() == (3, 1), "durations and retries on /metrics", counts)
    time.sleep(0.5)  # a few more sweeper passes count nothing twice
    assert counts() == (3, 1)
    wait_for(lambda: gauges()[0] == 0 and gauges()[2] == 0, "gauges drained", gauges)
    samples = scrape(stack)
    # The waiting jobs ran ~0.2 s each: their durations land in the right buckets.
    assert metric(
        samples,
        "ballast_job_duration_seconds_bucket",
        task="demo.sleep",
        status="COMPLETED",
        le="0.05",
    ) < metric(
        samples,
        "ballast_job_duration_seconds_bucket",
        task="demo.sleep",
        status="COMPLETED",
        le="+Inf",
    )
    assert (
        metric(
            samples,
            "ballast_job_duration_seconds_count",
            task="demo.sleep",
            status="CANCELLED",
        )
        >= 1
    )
