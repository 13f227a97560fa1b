"""`ballast jobs worker | list | cancel | retry | schedule ...` (loaded through the `ballast.cli`
entry-point group; also `python -m ballast_jobs ...`)."""

from __future__ import annotations

import socket
import sys
import uuid
from typing import Annotated

import typer
from sqlalchemy import select

from ballast_common.app import init_app
from ballast_common.db import UnitOfWork, run_tx
from ballast_common.errors import AppError, NotFoundError
from ballast_common.jobs import QUEUES, JobStatus, JobView, request_cancel, retry
from ballast_common.models import Job
from ballast_jobs.celery_app import app as celery_app
from ballast_jobs.dispatch import WorkerSender
from ballast_jobs.schedule_cli import app as schedule_app

app = typer.Typer(
    no_args_is_help=True, help="Background jobs: workers and job control."
)
app.add_typer(schedule_app, name="schedule")


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Comma-separated queues to consume.")
    ] = ",".join(QUEUES),
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", help="Pool processes (default: jobs.concurrency)."
        ),
    ] = None,
    pool: Annotated[
        str, typer.Option(help="prefork (default), solo or threads.")
    ] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery's log level.")] = "INFO",
    hostname: Annotated[
        str | None, typer.Option(help="Node name (default: a unique one on this host).")
    ] = None,
) -> None:
    """Run a worker (Ctrl-C or SIGTERM: finish running tasks, then stop)."""
    ctx = init_app("jobs")
    ctx.db.dispose()
    node = hostname or f"ballast-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    argv = [
        "worker",
        f"--queues={queues}",
        f"--concurrency={concurrency or ctx.config.jobs.concurrency}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        f"--hostname={node}",
        "--without-mingle",
        "--without-gossip",
    ]
    celery_app.worker_main(argv)


def _job(uow: UnitOfWork, job_id: str) -> Job:
    try:
        key = uuid.UUID(job_id)
    except ValueError:
        raise NotFoundError(f"not a job id: {job_id!r}") from None
    job = uow.session.get(Job, key, with_for_update=True)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job


def _line(job: JobView) -> str:
    err = f"  {job.error_code}: {job.error_message}" if job.error_code else ""
    return (
        f"{job.id}  {job.status:<9} {job.progress:>4.0%}  {job.name:<20} "
        f"{job.created_at:%Y-%m-%d %H:%M:%S}{err}"
    )


@app.command("list")
def list_jobs(
    status: Annotated[
        list[JobStatus] | None, typer.Option("--status", "-s", help="Filter by status.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest N jobs.")] = 50,
) -> None:
    """List jobs, newest first."""
    ctx = init_app("cli", log_stream=sys.stderr)

    def work(uow: UnitOfWork) -> list[JobView]:
        stmt = select(Job)
        if status:
            stmt = stmt.where(Job.status.in_([str(s) for s in status]))
        stmt = stmt.order_by(Job.created_at.desc(), Job.id).limit(limit)
        return [JobView.of(j) for j in uow.session.execute(stmt).scalars()]

    for job in run_tx(work, db=ctx.db):
        typer.echo(_line(job))


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a job (pending: at once; running: cooperative, then terminated)."""
    ctx = init_app("cli", log_stream=sys.stderr)
    try:
        job = run_tx(
            lambda uow: JobView.of(request_cancel(uow, _job(uow, job_id))), db=ctx.db
        )
    except AppError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(_line(job))


@app.command("retry")
def retry_cmd(job_id: str) -> None:
    """Run a failed or cancelled job again."""
    ctx = init_app("cli", log_stream=sys.stderr)
    send = WorkerSender(celery_app, ctx.config)
    try:
        job = run_tx(
            lambda uow: JobView.of(retry(uow, _job(uow, job_id), send=send)), db=ctx.db
        )
    except AppError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(_line(job))
