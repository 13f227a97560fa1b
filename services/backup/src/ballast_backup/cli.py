"""`ballast backup create|list|verify|restore|drill|prune|exporter`.

Errors are one line on stderr starting with `error:` (exit 1; 2 for bad usage or
configuration), like the rest of the ballast CLI. Long steps show a progress bar on
stderr; results go to stdout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from ballast_common.config import load_config
from ballast_common.errors import AppError, ConfigError

if TYPE_CHECKING:  # the store, the database layer and boto3 load when a command runs
    from ballast_backup.core import Backups

app = typer.Typer(
    help="Backups: full and incremental snapshots, verification, restore, drills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True)


class KindOption(StrEnum):
    full = "full"
    incremental = "incremental"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {_one_line(message)}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _errors(doing: str) -> Iterator[None]:
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except ConfigError as exc:
        raise _fail(exc.message, 2) from None
    except AppError as exc:
        raise _fail(exc.message) from None
    except KeyboardInterrupt:
        raise _fail(f"{doing} interrupted", 130) from None
    except Exception as exc:
        raise _fail(f"{doing} failed: {type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=_err,
        transient=True,
        disable=not _err.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _backups() -> Backups:
    from ballast_backup.core import Backups

    try:
        cfg = load_config()
    except AppError as exc:
        raise _fail(exc.message, 2) from None
    with _errors("opening the backup store"):
        return Backups.from_config(cfg, progress=_progress)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(
            f"--until {value!r} is not a time: use ISO 8601, e.g. 2026-11-22T07:30:00Z",
            2,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("create")
def create(
    kind: Annotated[
        KindOption, typer.Option("--kind", help="full or incremental.")
    ] = KindOption.full,
) -> None:
    """Take a backup, upload it, verify it (test restore), and mark it good."""
    backups = _backups()
    with _errors("backup"):
        manifest = backups.snapshot_db(kind.value)
    typer.echo(
        f"{manifest.id} {manifest.kind} good: {_size(manifest.size)} in "
        f"{manifest.duration_s:.1f} s, verified in {manifest.verify_s:.1f} s"
    )


@app.command("list")
def list_cmd() -> None:
    """List backups, oldest first: id, kind, status, size, parent."""
    backups = _backups()
    with _errors("listing backups"):
        manifests, damaged = backups.catalog.scan()
    if not manifests and not damaged:
        typer.echo("no backups yet")
        return
    for backup_id, why in sorted(damaged.items()):
        typer.echo(f"{backup_id}  {'?':<11} {'damaged':<10} {'?':>10}  ({why})")
    for m in manifests:
        typer.echo(
            f"{m.id}  {m.kind:<11} {m.status:<10} {_size(m.size):>10}  "
            f"parent={m.parent_id or '-'}"
            + (f"  ({m.status_reason})" if m.status_reason else "")
        )


@app.command("verify")
def verify(backup_id: Annotated[str, typer.Argument(help="Backup id.")]) -> None:
    """Re-read the checksums, test-restore into a scratch database, compare."""
    backups = _backups()
    with _errors("verification"):
        manifest = backups.verify(backup_id)
    typer.echo(f"{manifest.id} good (verified in {manifest.verify_s:.1f} s)")


@app.command("restore")
def restore(
    backup_id: Annotated[str, typer.Argument(help="Backup id, or 'latest'.")],
    target: Annotated[
        str | None,
        typer.Option(help="Database URL to restore into (default: a new database)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Restore the chain only up to this time (ISO 8601, UTC)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace a non-empty target (once the new copy is verified); with "
            "the live database as target, switch the verified copy in."
        ),
    ] = False,
    allow_older: Annotated[
        bool,
        typer.Option(
            help="With 'latest': restore the newest readable backup even though a "
            "newer one's manifest is missing or unreadable."
        ),
    ] = False,
) -> None:
    """Restore a backup chain into a scratch database, verify it, then put it in
    place of the target (a new database by default; with --force the live one)."""
    when = _parse_time(until) if until else None
    backups = _backups()
    with _errors("restore"):
        result = backups.restore(
            backup_id,
            target=target,
            until=when,
            force=force,
            allow_older=allow_older,
            on_plan=lambda plan: typer.echo(f"plan: {plan}", err=True),
        )
    rows = sum(result.rows.values())
    typer.echo(
        f"restored {result.chain[-1]} into {result.target} ({rows} rows, verified)"
    )
    if result.switched:
        typer.echo(f"switched: the previous database is kept as {result.previous}")


@app.command("drill")
def drill() -> None:
    """Restore the latest good chain into a scratch database, verify, record metrics."""
    backups = _backups()
    with _errors("restore drill"):
        record = backups.drill()
    typer.echo(
        f"drill ok: {record['backup_id']} restored and verified in "
        f"{record['duration_s']:.1f} s; data-loss window {record['rpo_s']:.0f} s"
    )


@app.command("prune")
def prune(
    dry_run: Annotated[
        bool, typer.Option(help="Only print what would be deleted.")
    ] = False,
) -> None:
    """Delete backups the retention policy (backup.keep_hourly/daily/weekly) drops."""
    backups = _backups()
    with _errors("prune"):
        doomed = backups.prune(dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} {len(doomed)} backup(s)" + (": " + ", ".join(doomed) if doomed else "")
    )


@app.command("exporter")
def exporter(
    host: Annotated[str, typer.Option(help="Bind address.")] = "0.0.0.0",
    port: Annotated[
        int, typer.Option(help="Port of /metrics.", min=1, max=65535)
    ] = 9102,
) -> None:
    """Serve Prometheus /metrics computed from the manifests in object storage."""
    backups = _backups()
    with _errors("exporter"):
        from ballast_backup.exporter import serve

        server = serve(backups.catalog, host, port)
    typer.echo(
        f"serving backup metrics on http://{host}:{server.server_port}/metrics",
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
