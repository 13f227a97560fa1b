"""Point-in-time recovery of a PostgreSQL server with pgBackRest (`ballast backup pitr`).

The logical backups of `core` (dump + audit-log incrementals) are portable and work on
SQLite; they cannot bring back a schema change or a write that bypassed the audit log.
pgBackRest can: its full and differential backups of the data directory plus the
continuous WAL archive (PostgreSQL's `archive_command` runs `pgbackrest archive-push`)
restore the whole server to any moment after the oldest kept full backup.

`Pitr` drives the `pgbackrest` binary with a configuration file it writes itself
(`setup`), so the server's archive_command and every later command read the same
settings. Restores never touch the live data directory until the restored copy has been
started on a scratch loopback port, reached its target, and answered queries; only then,
and only with the live server stopped, does `swap` rename the directories (the old one
is kept beside the new one).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import psycopg

from ballast_backup.dbio import find_pg_tool
from ballast_backup.manifest import BackupError
from ballast_common.config import AppConfig, PitrConfig

PitrKind = Literal["full", "diff"]
PITR_KINDS: tuple[PitrKind, ...] = ("full", "diff")
LOOPBACK = "127.0.0.1"
# pg_controldata's names of the limits a recovering copy must match, and their GUCs.
_CONTROL_LIMITS = {
    "max_connections": "max_connections",
    "max_worker_processes": "max_worker_processes",
    "max_wal_senders": "max_wal_senders",
    "max_prepared_xacts": "max_prepared_transactions",
    "max_locks_per_xact": "max_locks_per_transaction",
}


@dataclass(frozen=True)
class PitrBackup:
    """One pgBackRest backup set, from `pgbackrest info`."""

    label: str
    kind: str
    started: datetime
    stopped: datetime
    size: int
    repo_size: int
    prior: str | None
    error: bool

    @classmethod
    def from_info(cls, item: dict[str, Any]) -> PitrBackup:
        stamp = item.get("timestamp", {})
        info = item.get("info", {})
        return cls(
            label=str(item["label"]),
            kind=str(item.get("type", "?")),
            started=datetime.fromtimestamp(int(stamp.get("start", 0)), UTC),
            stopped=datetime.fromtimestamp(int(stamp.get("stop", 0)), UTC),
            size=int(info.get("size", 0)),
            repo_size=int(info.get("repository", {}).get("size", 0)),
            prior=item.get("prior"),
            error=bool(item.get("error", False)),
        )


@dataclass(frozen=True)
class RecoveryWindow:
    """What can be restored: backups, and the WAL archived after them."""

    backups: list[PitrBackup]
    wal_min: str | None
    wal_max: str | None

    @property
    def earliest(self) -> datetime | None:
        """The earliest moment a restore can reach (the oldest backup's end)."""
        good = [b for b in self.backups if not b.error]
        return min((b.stopped for b in good), default=None)


@dataclass
class RestoreResult:
    """Where a point-in-time restore went and what the verification saw."""

    data_dir: Path
    until: datetime | None
    duration_s: float
    databases: dict[str, int] = field(default_factory=dict)
    swapped: bool = False
    previous: Path | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _one_line(text: str) -> str:
    """The most telling line of pgBackRest's output (its ERROR line, else the last)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("ERROR"):
            return line
    return lines[-1] if lines else "no output"


def _c_locale() -> dict[str, str]:
    """This process's environment with messages in English (pg_controldata is parsed)."""
    env = dict(os.environ)  # noqa: TID251 - the child process inherits our environment
    env["LC_ALL"] = "C"
    return env


def _fatal(sockdir: Path) -> str:
    """The first FATAL line of the scratch server's log (else its last line)."""
    try:
        text = (sockdir / "postgres.log").read_text(errors="replace")
    except OSError:
        return "no server log"
    fatal = [line for line in text.splitlines() if "FATAL" in line or "PANIC" in line]
    return _one_line(fatal[0] if fatal else text)


def _verify_problems(output: str) -> list[str]:
    """What `pgbackrest verify` found wrong. It exits 0 whatever it finds, so its
    summary is read: a backup or WAL range whose status is not valid, and the counts
    (checksum invalid, missing, size invalid, other) under it."""
    problems: list[str] = []
    subject = ""
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith(("backup:", "archiveId:")):
            subject = line.split(",")[0]
            if "status:" in line and "status: valid" not in line:
                problems.append(line.split(", total")[0])
        elif line.startswith(
            ("checksum invalid:", "missing:", "size invalid:", "other:")
        ):
            problems.append(f"{subject}: {line}" if subject else line)
    return [p for p in problems if not p.endswith(": 0")]


def _pg_time(moment: datetime) -> str:
    """A recovery target PostgreSQL reads the same everywhere (UTC, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


class Pitr:
    """pgBackRest for one PostgreSQL server (one stanza), configured from `AppConfig`."""

    def __init__(
        self,
        settings: PitrConfig,
        repo: dict[str, str],
        *,
        config_file: Path,
        state_dir: Path,
        pg_bindir: Path | None = None,
    ) -> None:
        if settings.pg_data is None:
            raise BackupError(
                "backup.pitr.pg_data is not set: name the PostgreSQL data directory "
                "(BALLAST_BACKUP__PITR__PG_DATA)"
            )
        self.settings = settings
        self.pg_data = Path(settings.pg_data)
        self.repo = repo
        self.config_file = config_file
        self.state_dir = state_dir
        self.pg_bindir = pg_bindir

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(cls, cfg: AppConfig) -> Pitr:
        settings = cfg.backup.pitr
        config_file = Path(
            settings.config_file
            or cfg.paths.data_dir / "pgbackrest" / "pgbackrest.conf"
        )
        return cls(
            settings,
            cls._repo_options(cfg),
            config_file=config_file,
            # pgBackRest's logs, locks and spool live beside its configuration.
            state_dir=config_file.parent,
            pg_bindir=cfg.backup.pg_bindir,
        )

    @staticmethod
    def _repo_options(cfg: AppConfig) -> dict[str, str]:
        pitr = cfg.backup.pitr
        options: dict[str, str] = {"repo1-path": pitr.repo_path}
        endpoint = pitr.s3_endpoint or cfg.s3.endpoint_url
        if not endpoint:
            options["repo1-type"] = "posix"
            options["repo1-path"] = str(
                (cfg.paths.backup_path / "pgbackrest").resolve()
            )
        else:
            parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            if parts.scheme != "https" or not parts.hostname:
                raise BackupError(
                    f"pgBackRest needs an https S3 endpoint, not {endpoint!r}: set "
                    "backup.pitr.s3_endpoint (BALLAST_BACKUP__PITR__S3_ENDPOINT)"
                )
            if bool(cfg.s3.access_key_id) != (cfg.s3.secret_access_key is not None):
                raise BackupError(
                    "s3.access_key_id and s3.secret_access_key go together: set both, "
                    "or neither to use the pod's identity for the pgBackRest repository"
                )
            options.update(
                {
                    "repo1-type": "s3",
                    "repo1-s3-endpoint": parts.hostname,
                    "repo1-s3-bucket": cfg.s3.bucket,
                    "repo1-s3-region": cfg.s3.region,
                    "repo1-s3-uri-style": "path",
                    "repo1-storage-verify-tls": "y" if pitr.verify_tls else "n",
                }
            )
            if cfg.s3.access_key_id and cfg.s3.secret_access_key is not None:
                options["repo1-s3-key"] = cfg.s3.access_key_id
                options["repo1-s3-key-secret"] = (
                    cfg.s3.secret_access_key.get_secret_value()
                )
            else:
                # IRSA: pgBackRest reads AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE,
                # which the EKS pod identity webhook sets, and asks STS for keys.
                options["repo1-s3-key-type"] = "web-id"
            if parts.port:
                options["repo1-storage-port"] = str(parts.port)
            if pitr.ca_file is not None:
                options["repo1-storage-ca-file"] = str(pitr.ca_file)
        if pitr.cipher_pass is not None:
            options["repo1-cipher-type"] = "aes-256-cbc"
            options["repo1-cipher-pass"] = pitr.cipher_pass.get_secret_value()
        return options

    def config_text(self) -> str:
        s = self.settings
        socket_dir = s.pg_socket_dir or Path("/var/run/postgresql")
        lines = ["[global]"]
        lines += [f"{key}={value}" for key, value in self.repo.items()]
        lines += [
            f"repo1-retention-full={s.retention_full}",
            # Small files travel in bundles: one request instead of hundreds.
            "repo1-bundle=y",
            f"process-max={s.process_max}",
            "start-fast=y",
            "compress-type=lz4",
            f"log-path={self.state_dir / 'log'}",
            f"lock-path={self.state_dir / 'lock'}",
            f"spool-path={self.state_dir / 'spool'}",
            "log-level-console=warn",
            "log-level-file=info",
            "",
            f"[{s.stanza}]",
            f"pg1-path={self.pg_data}",
            f"pg1-port={s.pg_port}",
            f"pg1-socket-path={socket_dir}",
            f"pg1-user={s.pg_user}",
        ]
        if s.pg_host:
            lines += [
                f"pg1-host={s.pg_host}",
                "pg1-host-type=tls",
                f"pg1-host-port={s.pg_host_port}",
            ]
            for option, path in (
                ("pg1-host-cert-file", s.pg_host_cert_file),
                ("pg1-host-key-file", s.pg_host_key_file),
                ("pg1-host-ca-file", s.pg_host_ca_file),
            ):
                if path is not None:
                    lines.append(f"{option}={path}")
        lines.append("")
        return "\n".join(lines)

    def archive_command(self) -> str:
        """The `archive_command` PostgreSQL needs (with archive_mode=on, wal_level=replica)."""
        return (
            f"pgbackrest --config={self.config_file} --stanza={self.settings.stanza} "
            "archive-push %p"
        )

    def write_config(self) -> Path:
        """Write pgbackrest.conf (mode 0600, owned by the OS user) and its directories;
        an unchanged file is left alone (the server's archive_command reads it)."""
        text = self.config_text()
        with contextlib.suppress(OSError):
            if self.config_file.read_text() == text:
                return self.config_file
        for sub in ("log", "lock", "spool"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
            self._own(self.state_dir / sub)
        self._own(self.state_dir)
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config_file.with_name(self.config_file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        self._own(tmp)
        tmp.replace(self.config_file)
        if self.repo.get("repo1-type") == "posix":
            repo = Path(self.repo["repo1-path"])
            repo.mkdir(parents=True, exist_ok=True)
            self._own(repo)
        return self.config_file

    # ------------------------------------------------------------------ running

    def _as_user(self) -> list[str]:
        user = self.settings.os_user
        if user and user != "root" and os.geteuid() == 0:
            return ["runuser", "-u", user, "--"]
        return []

    def _own(self, path: Path) -> None:
        user = self.settings.os_user
        if user and user != "root" and os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(
        self, args: Sequence[str], *, doing: str, timeout: float | None = None
    ) -> str:
        self.write_config()  # the settings of this run, also for a fresh pod
        binary = shutil.which("pgbackrest")
        if binary is None:
            raise BackupError(
                "pgbackrest not found: install it (apt-get install pgbackrest)"
            )
        cmd = [
            *self._as_user(),
            binary,
            f"--config={self.config_file}",
            f"--stanza={self.settings.stanza}",
            *args,
        ]
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BackupError(
                f"{doing}: pgbackrest timed out after {timeout} s"
            ) from None
        if done.returncode != 0:
            raise BackupError(f"{doing} failed: {_one_line(done.stderr + done.stdout)}")
        return done.stdout

    def _pg_tool(self, name: str, data_dir: Path) -> str:
        """A server binary of the data directory's own major version."""
        if self.pg_bindir is None:
            with contextlib.suppress(OSError):
                major = (data_dir / "PG_VERSION").read_text().strip()
                candidate = Path("/usr/lib/postgresql") / major / "bin" / name
                if candidate.is_file():
                    return str(candidate)
        return find_pg_tool(name, self.pg_bindir)

    # ------------------------------------------------------------------ commands

    def setup(self) -> None:
        """Write the configuration, create the stanza, and check WAL archiving works."""
        self.write_config()
        self._run(["stanza-create"], doing="stanza-create")
        self.check()

    def check(self) -> None:
        """Archive one WAL segment through archive_command and find it in the repo."""
        self._run(["check"], doing="archive check")

    def info(self) -> RecoveryWindow:
        raw = self._run(["info", "--output=json"], doing="info")
        try:
            stanzas = json.loads(raw)
        except ValueError:
            raise BackupError("pgbackrest info printed no JSON") from None
        for stanza in stanzas:
            if stanza.get("name") != self.settings.stanza:
                continue
            status = stanza.get("status", {})
            if status.get("code", 0) not in (0, 2):  # 2: no backups yet
                raise BackupError(
                    f"stanza {self.settings.stanza}: {status.get('message', 'error')}"
                )
            archives = stanza.get("archive") or [{}]
            return RecoveryWindow(
                backups=[PitrBackup.from_info(b) for b in stanza.get("backup", [])],
                wal_min=archives[-1].get("min"),
                wal_max=archives[-1].get("max"),
            )
        raise BackupError(f"stanza {self.settings.stanza} not found")

    def create(self, kind: PitrKind = "full") -> PitrBackup:
        """Take a full or differential backup; returns it as `info` lists it."""
        if kind not in PITR_KINDS:
            raise BackupError(
                f"kind must be one of {', '.join(PITR_KINDS)}, not {kind!r}"
            )
        before = {b.label for b in self.info().backups}
        self._run([f"--type={kind}", "backup"], doing=f"{kind} backup")
        new = [b for b in self.info().backups if b.label not in before]
        if not new:
            raise BackupError(f"{kind} backup finished but is not in the repository")
        return new[-1]

    def verify(self) -> RecoveryWindow:
        """Check every file of every backup and the WAL archive against its checksum."""
        window = self.info()
        if not window.backups:
            raise BackupError(
                "no pgBackRest backup yet: run `ballast backup pitr create`"
            )
        out = self._run(["--log-level-console=info", "verify"], doing="verify")
        problems = _verify_problems(out)
        if problems:
            raise BackupError(f"verify failed: {'; '.join(problems[:4])}")
        return window

    def restore(
        self,
        until: datetime | None = None,
        *,
        target_dir: Path | None = None,
        swap: bool = False,
        on_step: Callable[[str], None] = lambda _s: None,
    ) -> RestoreResult:
        """Restore into a new directory, start it there to verify, then optionally swap.

        `until` None restores to the end of the archived WAL. `swap` needs the live
        server stopped; the live directory is kept as `<pg_data>.pre-restore-<stamp>`.
        """
        started = time.monotonic()
        now = datetime.now(UTC)
        if swap and self.settings.pg_host:
            raise BackupError(
                f"the data directory is on {self.settings.pg_host}: restore with --swap "
                "on that host (restore without --swap here verifies a copy)"
            )
        if until is not None:
            if until.tzinfo is None:
                raise BackupError("--until needs a time zone (e.g. ...Z)")
            if until > now:
                raise BackupError(f"--until {until.isoformat()} is in the future")
            earliest = self.info().earliest
            if earliest is None:
                raise BackupError("no pgBackRest backup to restore from")
            if until < earliest:
                raise BackupError(
                    f"--until {until.isoformat()} is before the oldest backup "
                    f"(ends {earliest.isoformat()}): nothing can restore that far back"
                )
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        dest = target_dir or self.pg_data.with_name(
            f"{self.pg_data.name}.restore-{stamp}"
        )
        if dest.resolve() == self.pg_data.resolve():
            raise BackupError(
                "the restore target is the live data directory: restore elsewhere, "
                "then --swap"
            )
        if dest.exists() and any(dest.iterdir()):
            raise BackupError(f"{dest} exists and is not empty")
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._own(dest)
        created = True
        try:
            args = ["restore", f"--pg1-path={dest}"]
            if self.settings.pg_host:
                # The copy is made here, not on the database host.
                args.append("--reset-pg1-host")
            if until is not None:
                args += [
                    "--type=time",
                    f"--target={_pg_time(until)}",
                    "--target-action=promote",
                ]
            on_step(f"restoring into {dest}")
            self._run(args, doing="restore")
            on_step("starting the restored copy on a scratch port to verify it")
            databases = self._verify_copy(dest)
            result = RestoreResult(
                data_dir=dest,
                until=until,
                duration_s=0.0,
                databases=databases,
            )
            created = False  # verified: keep it whatever happens next
            if swap:
                on_step(f"swapping {dest} in for {self.pg_data}")
                result.previous = self._swap(dest, stamp)
                result.data_dir = self.pg_data
                result.swapped = True
        finally:
            if created:
                shutil.rmtree(dest, ignore_errors=True)
        result.duration_s = round(time.monotonic() - started, 3)
        return result

    def drill(
        self, save: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Restore the latest state into a scratch directory, verify, throw it away.

        `save` receives the record (success or failure) for the exporter to read.
        """
        started_at = datetime.now(UTC)
        started = time.monotonic()
        record: dict[str, Any] = {
            "timestamp": started_at.timestamp(),
            "success": False,
            "kind": "pitr",
        }
        scratch = Path(tempfile.mkdtemp(prefix="ballast-pitr-drill-"))
        self._own(scratch)
        try:
            window = self.info()
            good = [b for b in window.backups if not b.error]
            if not good:
                raise BackupError("no pgBackRest backup to drill")
            record["backup_id"] = good[-1].label
            record["rpo_s"] = round((started_at - good[-1].stopped).total_seconds(), 3)
            result = self.restore(target_dir=scratch / "data")
            record["databases"] = result.databases
            record["duration_s"] = result.duration_s
            record["success"] = True
        except BackupError as exc:
            record["error"] = exc.message
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            record.setdefault("duration_s", round(time.monotonic() - started, 3))
            if save is not None:
                with contextlib.suppress(Exception):
                    save(record)
        return record

    # ------------------------------------------------------------------ helpers

    def _swap(self, dest: Path, stamp: str) -> Path:
        if self._running(self.pg_data):
            raise BackupError(
                f"PostgreSQL is running on {self.pg_data}: stop it, then swap; the "
                f"verified copy stays in {dest}"
            )
        previous = self.pg_data.with_name(f"{self.pg_data.name}.pre-restore-{stamp}")
        if self.pg_data.exists():
            self.pg_data.rename(previous)
        try:
            dest.rename(self.pg_data)
        except OSError:
            if previous.exists() and not self.pg_data.exists():
                previous.rename(self.pg_data)
            raise
        return previous

    def _running(self, data_dir: Path) -> bool:
        if not (data_dir / "postmaster.pid").exists():
            return False
        done = subprocess.run(
            [
                *self._as_user(),
                self._pg_tool("pg_ctl", data_dir),
                "status",
                "-D",
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode == 0

    def _connect(
        self, sockdir: Path, port: int, dbname: str
    ) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(sockdir),
            port=port,
            user=self.settings.pg_user,
            dbname=dbname,
            connect_timeout=5,
        )

    def _databases_once_recovered(self, sockdir: Path, port: int) -> list[str] | None:
        """The copy's databases once it has left recovery; None while it has not."""
        try:
            with self._connect(sockdir, port, "postgres") as conn:
                row = conn.execute("select pg_is_in_recovery()").fetchone()
                if row is None or row[0]:
                    return None
                return [
                    r[0]
                    for r in conn.execute(
                        "select datname from pg_database where not datistemplate "
                        "order by 1"
                    )
                ]
        except psycopg.OperationalError:
            return None

    def _verify_copy(self, data_dir: Path) -> dict[str, int]:
        """Start the copy on loopback, wait until it has recovered, count its tables."""
        with self._started(data_dir) as (port, sockdir):
            deadline = time.monotonic() + self.settings.recovery_timeout_s
            while (names := self._databases_once_recovered(sockdir, port)) is None:
                if not self._running(data_dir):
                    raise BackupError(
                        f"the restored copy did not finish recovery: {_fatal(sockdir)}"
                    )
                if time.monotonic() > deadline:
                    raise BackupError(
                        "the restored copy did not finish recovery within "
                        f"{self.settings.recovery_timeout_s} s"
                    )
                time.sleep(0.2)
            counts: dict[str, int] = {}
            for name in names:
                with self._connect(sockdir, port, name) as conn:
                    row = conn.execute(
                        "select count(*) from pg_class c join pg_namespace n "
                        "on n.oid = c.relnamespace where c.relkind in ('r', 'p') and "
                        "n.nspname not in ('pg_catalog', 'information_schema')"
                    ).fetchone()
                    counts[name] = int(row[0]) if row else 0
            return counts

    def _recorded_limits(self, data_dir: Path) -> dict[str, str]:
        """The limits the backed-up server ran with (pg_controldata): a copy started
        with lower ones refuses to recover ("insufficient parameter settings")."""
        done = subprocess.run(
            [
                *self._as_user(),
                self._pg_tool("pg_controldata", data_dir),
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            check=False,
            env=_c_locale(),
        )
        limits: dict[str, str] = {}
        for line in done.stdout.splitlines():
            name, _, value = line.partition(" setting:")
            if name in _CONTROL_LIMITS and value.strip().isdigit():
                limits[_CONTROL_LIMITS[name]] = value.strip()
        return limits

    @contextlib.contextmanager
    def _started(self, data_dir: Path) -> Iterator[tuple[int, Path]]:
        pg_ctl = self._pg_tool("pg_ctl", data_dir)
        sockdir = Path(tempfile.mkdtemp(prefix="ballast-pitr-sock-"))
        self._own(sockdir)
        log = sockdir / "postgres.log"
        port = _free_port()
        options = " ".join(
            [
                f"-p {port} -c listen_addresses={LOOPBACK}",
                f"-c unix_socket_directories={sockdir} -c archive_mode=off",
                *(f"-c {k}={v}" for k, v in self._recorded_limits(data_dir).items()),
            ]
        )
        cmd = [*self._as_user(), pg_ctl, "start", "-D", str(data_dir), "-l", str(log)]
        try:
            done = subprocess.run(
                [
                    *cmd,
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(self.settings.recovery_timeout_s),
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise BackupError(f"the restored copy did not start: {_fatal(sockdir)}")
            yield port, sockdir
        finally:
            subprocess.run(
                [
                    *self._as_user(),
                    pg_ctl,
                    "stop",
                    "-D",
                    str(data_dir),
                    "-m",
                    "fast",
                    "-w",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            shutil.rmtree(sockdir, ignore_errors=True)
