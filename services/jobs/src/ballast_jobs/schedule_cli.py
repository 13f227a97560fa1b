"""`ballast jobs schedule list | add | pause | resume | remove`: recurring jobs.

The workers' sweepers start each tick's job (once across every worker); these commands
only change the `job_schedules` rows, audited like the api's changes.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from sqlalchemy import select

from ballast_common.cli import EXIT_USAGE, _config, _errors, _init, fail
from ballast_common.db import UnitOfWork, run_tx
from ballast_common.jobs import schedules
from ballast_common.models import JobSchedule, User

app = typer.Typer(
    no_args_is_help=True,
    help="Recurring jobs: cron schedules stored in the database.",
)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


def _line(s: JobSchedule) -> str:
    state = "active" if s.enabled else "paused"
    err = f"  last error: {s.last_error.splitlines()[0]}" if s.last_error else ""
    return (
        f"{s.id!s:<36}  {s.name[:24]:<24} {state:<6}  {s.cron[:20]:<20} "
        f"{s.timezone[:20]:<20} {s.task[:20]:<20} {_when(s.next_run_at)}{err}"
    )


@app.command("list")
def list_cmd() -> None:
    """List schedules by name with their next run (UTC)."""
    ctx = _init(_config())
    with _errors("listing schedules"):
        try:
            rows = run_tx(
                lambda uow: list(
                    uow.session.execute(
                        select(JobSchedule).order_by(JobSchedule.name)
                    ).scalars()
                ),
                db=ctx.db,
            )
        finally:
            ctx.db.dispose()
    if not rows:
        typer.echo("no schedules")
        return
    typer.echo(
        f"{'id':<36}  {'name':<24} {'state':<6}  {'cron':<20} {'timezone':<20} "
        f"{'task':<20} next run"
    )
    for row in rows:
        typer.echo(_line(row))


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="A unique name.")],
    cron: Annotated[
        str,
        typer.Argument(
            help="Five cron fields (minute hour day month weekday) or @daily etc."
        ),
    ],
    task: Annotated[
        str, typer.Option("--task", "-t", help="The job to start, e.g. demo.sleep.")
    ],
    kwargs: Annotated[
        str, typer.Option("--kwargs", help="The job's parameters as a JSON object.")
    ] = "{}",
    timezone: Annotated[
        str, typer.Option("--timezone", "--tz", help="IANA time zone of the cron.")
    ] = "UTC",
    owner: Annotated[
        str | None,
        typer.Option(help="Username whose jobs these are (default: the system)."),
    ] = None,
    paused: Annotated[bool, typer.Option(help="Add it paused.")] = False,
) -> None:
    """Add a schedule; its first run is its first tick from now."""
    try:
        params = json.loads(kwargs)
    except ValueError as exc:
        raise fail(f"--kwargs is not JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(params, dict):
        raise fail("--kwargs must be a JSON object", EXIT_USAGE)
    ctx = _init(_config())

    def work(uow: UnitOfWork) -> JobSchedule:
        owner_id = None
        if owner is not None:
            owner_id = uow.session.execute(
                select(User.id).where(User.username == owner)
            ).scalar_one_or_none()
            if owner_id is None:
                raise fail(f"no user named {owner!r}", EXIT_USAGE)
        return schedules.create(
            uow,
            name=name,
            task=task,
            kwargs=params,
            cron=cron,
            timezone=timezone,
            enabled=not paused,
            created_by=owner_id,
            max_timeout=ctx.config.jobs.soft_time_limit,
        )

    with _errors("adding the schedule"):
        try:
            row = run_tx(work, db=ctx.db)
        finally:
            ctx.db.dispose()
    typer.echo(_line(row))


def _set_enabled(ref: str, enabled: bool) -> None:
    ctx = _init(_config())
    with _errors("changing the schedule"):
        try:
            row = run_tx(
                lambda uow: schedules.change(
                    uow, schedules.find(uow, ref), enabled=enabled
                ),
                db=ctx.db,
            )
        finally:
            ctx.db.dispose()
    typer.echo(_line(row))


@app.command()
def pause(ref: Annotated[str, typer.Argument(help="Schedule id or name.")]) -> None:
    """Pause a schedule (its ticks pass without a run until resumed)."""
    _set_enabled(ref, False)


@app.command()
def resume(ref: Annotated[str, typer.Argument(help="Schedule id or name.")]) -> None:
    """Resume a schedule from its next tick (paused ticks are not caught up)."""
    _set_enabled(ref, True)


@app.command()
def remove(ref: Annotated[str, typer.Argument(help="Schedule id or name.")]) -> None:
    """Remove a schedule (the jobs it started stay)."""
    ctx = _init(_config())
    with _errors("removing the schedule"):
        try:
            run_tx(
                lambda uow: schedules.remove(uow, schedules.find(uow, ref)), db=ctx.db
            )
        finally:
            ctx.db.dispose()
    typer.echo(f"removed schedule {ref}")
