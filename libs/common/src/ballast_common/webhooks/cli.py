"""`ballast webhooks list | replay`: inbound webhooks whose processing failed (dead
letters). Loaded through the `ballast.cli` entry-point group; heavy imports happen
inside the commands so `--help` answers at once."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from ballast_common.cli import EXIT_USAGE, _config, _errors, _init, fail

app = typer.Typer(
    no_args_is_help=True,
    help="Inbound webhooks: list dead letters, process them again.",
)


@app.command("list")
def list_cmd(
    status: Annotated[
        str,
        typer.Option(help="failed (dead letters), received, processed or all."),
    ] = "failed",
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="At most this many.")
    ] = 50,
) -> None:
    """List inbound webhooks, newest first (default: the dead letters)."""
    wanted = status.upper()
    if wanted not in ("FAILED", "RECEIVED", "PROCESSED", "ALL"):
        raise fail(
            f"unknown status {status!r}: failed, received, processed or all", EXIT_USAGE
        )
    ctx = _init(_config())
    with _errors("listing webhooks"):
        from ballast_common.webhooks.inbound import list_receipts

        try:
            rows = list_receipts(
                ctx.db,
                status=None if wanted == "ALL" else wanted,
                source=source,
                limit=limit,
            )
        finally:
            ctx.db.dispose()
    if not rows:
        typer.echo("no webhooks")
        return
    typer.echo(
        f"{'id':<36}  {'source':<16} {'status':<9} {'received':<19}  {'type':<24} error"
    )
    for r in rows:
        received = r.received_at.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(
            f"{r.id!s:<36}  {r.source:<16} {r.status.lower():<9} {received:<19}  "
            f"{(r.event_type or '-')[:24]:<24} {(r.error or '').splitlines()[0] if r.error else ''}"
        )


@app.command()
def replay(
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="Dead letter ids (see `ballast webhooks list`)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Process dead letters again (a worker picks them up)."""
    if bool(ids) == all_:
        raise fail("name dead letter ids or --all (not both)", EXIT_USAGE)
    try:
        wanted = None if all_ else [uuid.UUID(i) for i in ids or []]
    except ValueError:
        raise fail(
            "ids must be UUIDs (see `ballast webhooks list`)", EXIT_USAGE
        ) from None
    ctx = _init(_config())
    with _errors("replaying webhooks"):
        from ballast_common.webhooks.inbound import replay as replay_receipts

        try:
            done = replay_receipts(ctx.db, wanted)
        finally:
            ctx.db.dispose()
    typer.echo(f"queued {len(done)} webhook(s) for processing")
