"""`ballast backup create|list|verify|restore|drill|prune|exporter|pitr ...`.

Errors are one line on stderr starting with `error:` (exit 1; 2 for bad usage or
configuration), like the rest of the ballast CLI. Long steps show a progress bar on
stderr; results go to stdout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
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
    from ballast_backup.pitr import Pitr

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
    host: Annotated[
        str, typer.Option(help="Bind address.")
    ] = "0.0.0.0",  # noqa: S104 - a pod's exporter
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


# --------------------------------------------------------------------------- pitr

pitr_app = typer.Typer(
    help="Point-in-time recovery of a PostgreSQL server with pgBackRest "
    "(WAL archiving to the object store; see services/backup/README.md).",
    no_args_is_help=True,
)
app.add_typer(pitr_app, name="pitr")


class PitrKindOption(StrEnum):
    full = "full"
    diff = "diff"


def _pitr() -> Pitr:
    from ballast_backup.pitr import Pitr

    try:
        cfg = load_config()
    except AppError as exc:
        raise _fail(exc.message, 2) from None
    with _errors("pgBackRest configuration"):
        return Pitr.from_config(cfg)


@pitr_app.command("setup")
def pitr_setup() -> None:
    """Write pgbackrest.conf, create the stanza, and check WAL archiving end to end."""
    pitr = _pitr()
    with _errors("pitr setup"):
        pitr.setup()
    typer.echo(f"stanza {pitr.settings.stanza} ready; archiving checked")
    typer.echo(f"archive_command = '{pitr.archive_command()}'")


@pitr_app.command("archive-command")
def pitr_archive_command() -> None:
    """Print the archive_command PostgreSQL needs (with archive_mode=on)."""
    typer.echo(_pitr().archive_command())


@pitr_app.command("create")
def pitr_create(
    kind: Annotated[
        PitrKindOption,
        typer.Option("--kind", help="full, or diff (changes since the last full)."),
    ] = PitrKindOption.full,
) -> None:
    """Take a pgBackRest backup of the whole server."""
    pitr = _pitr()
    with _errors(f"{kind.value} backup"):
        backup = pitr.create(kind.value)
    seconds = (backup.stopped - backup.started).total_seconds()
    typer.echo(
        f"{backup.label} {backup.kind}: {_size(backup.size)} "
        f"({_size(backup.repo_size)} stored) in {seconds:.0f} s"
    )


@pitr_app.command("list")
def pitr_list() -> None:
    """List pgBackRest backups and the archived WAL range."""
    pitr = _pitr()
    with _errors("listing"):
        window = pitr.info()
    if not window.backups:
        typer.echo("no backups yet")
    for b in window.backups:
        typer.echo(
            f"{b.label}  {b.kind:<5} {'error' if b.error else 'ok':<5} "
            f"{_size(b.size):>10}  {b.started.isoformat()} .. {b.stopped.isoformat()}"
        )
    typer.echo(f"wal: {window.wal_min or '-'} .. {window.wal_max or '-'}")
    if window.earliest:
        typer.echo(f"restorable from {window.earliest.isoformat()}")


@pitr_app.command("verify")
def pitr_verify() -> None:
    """Check every backup file and archived WAL segment against its checksum."""
    pitr = _pitr()
    with _errors("verify"):
        window = pitr.verify()
    typer.echo(f"{len(window.backups)} backup(s) and the WAL archive verified")


@pitr_app.command("restore")
def pitr_restore(
    until: Annotated[
        str | None,
        typer.Option(
            help="Recover to this moment (ISO 8601); default: the end of the WAL."
        ),
    ] = None,
    target_dir: Annotated[
        Path | None,
        typer.Option(help="Restore into this new directory (default: beside pg_data)."),
    ] = None,
    swap: Annotated[
        bool,
        typer.Option(
            help="Once verified, put the copy in place of pg_data (PostgreSQL must be "
            "stopped; the old directory is kept)."
        ),
    ] = False,
) -> None:
    """Restore the server into a new directory, verify it on a scratch port, then
    optionally swap it in."""
    when = _parse_time(until) if until else None
    pitr = _pitr()
    with _errors("restore"):
        result = pitr.restore(
            when,
            target_dir=target_dir,
            swap=swap,
            on_step=lambda step: typer.echo(step, err=True),
        )
    dbs = ", ".join(f"{name} ({n} tables)" for name, n in result.databases.items())
    typer.echo(f"restored into {result.data_dir} in {result.duration_s:.1f} s: {dbs}")
    if result.swapped:
        typer.echo(
            f"swapped: the previous data directory is kept as {result.previous}; start "
            "PostgreSQL, then take a full backup (ballast backup pitr create --kind full)"
        )


@pitr_app.command("drill")
def pitr_drill() -> None:
    """Restore the latest state into a scratch directory, verify, record the result."""
    pitr = _pitr()
    catalog = _backups().catalog
    with _errors("pitr drill"):
        record = pitr.drill(save=lambda r: catalog.save_drill(r, "pitr"))
    typer.echo(
        f"drill ok: {record['backup_id']} + WAL restored and verified in "
        f"{record['duration_s']:.1f} s; data-loss window {record['rpo_s']:.0f} s"
    )
