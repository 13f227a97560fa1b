"""snapshot_db, verify, restore, drill and prune.

Every backup is verified before it counts: its objects are re-read and checked against
the manifest's sha256, its chain is restored into a scratch database, and the per-table
row counts and content checksums must equal those of the source at capture time. Only
then is the manifest marked ``good``. A restore goes into a new database by default,
is verified the same way, and only then (``switch``) takes the configured database's
place.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import Connection, Engine

from ballast_backup import changes
from ballast_backup.dbio import (
    CHUNK,
    CountingReader,
    Server,
    Target,
    compare_stats,
    database_size,
    identity,
    is_empty,
    list_tables,
    pg_dump_stream,
    pg_restore_stream,
    schema_revision,
    scratch_name,
    sqlite_copy,
    table_stats,
)
from ballast_backup.manifest import (
    BackupError,
    Catalog,
    Kind,
    Manifest,
    ObjectEntry,
    new_id,
)
from ballast_common.config import AppConfig, load_config
from ballast_common.errors import NotFoundError
from ballast_common.storage import ObjectStore, open_store

# progress(description, total bytes or None) -> context manager yielding advance(n).
ProgressFactory = Callable[
    [str, int | None], AbstractContextManager[Callable[[int], None]]
]


@contextlib.contextmanager
def no_progress(
    _description: str, _total: int | None
) -> Iterator[Callable[[int], None]]:
    yield lambda _n: None


@dataclass
class Backups:
    """Backups of one database into one object store."""

    config: AppConfig
    store: ObjectStore
    source: Target
    progress: ProgressFactory = no_progress
    catalog: Catalog = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.store, self.config.backup.prefix)

    @classmethod
    def from_config(
        cls,
        config: AppConfig | None = None,
        *,
        store: ObjectStore | None = None,
        progress: ProgressFactory = no_progress,
    ) -> Backups:
        cfg = config or load_config()
        return cls(
            config=cfg,
            store=store or open_store(cfg),
            source=Target.parse(cfg.database.url_with_password()),
            progress=progress,
        )

    @property
    def bindir(self) -> Path | None:
        return self.config.backup.pg_bindir

    def server(self, target: Target | None = None) -> Server:
        return Server.for_target(target or self.source, self.config.backup.scratch_url)

    # ------------------------------------------------------------------ create

    def snapshot_db(self, kind: Kind = "full") -> Manifest:
        """Take a full or incremental backup, upload it, verify it, mark it good.

        Raises:
            BackupError: nothing to build an incremental on, the upload failed, or the
                verification found a difference (the manifest then says ``bad``).
        """
        if kind not in ("full", "incremental"):
            raise BackupError(f"unknown backup kind {kind!r}: use full or incremental")
        started = time.monotonic()
        manifest_id = new_id(kind)
        try:
            if kind == "full":
                manifest = self._full(manifest_id)
            else:
                manifest = self._incremental(manifest_id)
        except BaseException:
            # Nothing partial stays behind (and nothing without a manifest is listed).
            with contextlib.suppress(Exception):
                for key in self.store.list(self.catalog.key(manifest_id, "")):
                    self.store.delete(key)
            raise
        manifest.duration_s = round(time.monotonic() - started, 3)
        self.catalog.save(manifest)
        return self.verify(manifest.id)

    def _upload(
        self, key: str, stream: IO[bytes], total: int | None, what: str
    ) -> ObjectEntry:
        with self.progress(what, total) as advance:
            reader = CountingReader(stream, advance)
            info = self.store.put(key, reader)  # type: ignore[arg-type]
        if info.sha256 != reader.sha.hexdigest() or info.size != reader.size:
            raise BackupError(f"upload of {key} was not stored intact")
        return ObjectEntry(key, info.size, info.sha256)

    def _full(self, manifest_id: str) -> Manifest:
        src = self.source
        if src.is_sqlite:
            return self._full_sqlite(manifest_id)
        engine = src.engine()
        try:
            with engine.connect() as raw:
                conn = raw.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
                    snapshot = str(
                        conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                    )
                    manifest = self._describe(manifest_id, "full", None, conn)
                    total = database_size(conn, src)
                    key = self.catalog.key(manifest_id, "dump.pgc")
                    # The per-table checksums read the same snapshot on a second
                    # connection while pg_dump runs: the backup takes the longer of
                    # the two, not their sum.
                    with ThreadPoolExecutor(1, "ballast-backup-stats") as pool:
                        stats = pool.submit(_stats_in_snapshot, engine, snapshot)
                        entry = pg_dump_stream(
                            src,
                            snapshot,
                            lambda stream: self._upload(
                                key, stream, total, "dump + upload"
                            ),
                            bindir=self.bindir,
                        )
                        tables = stats.result()
                    manifest.objects.append(entry)
                    manifest.change_log = changes.change_log_for_full(conn)
                    manifest.tables = tables
                return manifest
        finally:
            engine.dispose()

    def _full_sqlite(self, manifest_id: str) -> Manifest:
        with tempfile.TemporaryDirectory(prefix="ballast-backup-") as tmp:
            copy = Path(tmp) / "db.sqlite"
            sqlite_copy(self.source.path, copy)
            snap = Target.parse(f"sqlite:///{copy}")
            engine = snap.engine()
            try:
                with engine.connect() as conn, conn.begin():
                    manifest = self._describe(manifest_id, "full", None, conn)
                    manifest.change_log = changes.change_log_for_full(conn)
                    manifest.tables = table_stats(
                        conn, dict.fromkeys(list_tables(conn))
                    )
            finally:
                engine.dispose()
            key = self.catalog.key(manifest_id, "db.sqlite")
            with copy.open("rb") as stream:
                manifest.objects.append(
                    self._upload(key, stream, copy.stat().st_size, "upload")
                )
        return manifest

    def _describe(
        self, manifest_id: str, kind: Kind, parent: str | None, conn: Connection
    ) -> Manifest:
        source_identity = identity(conn, self.source)
        return Manifest(
            id=manifest_id,
            kind=kind,
            parent_id=parent,
            created_at=datetime.now(UTC).isoformat(),
            schema_revision=schema_revision(conn),
            source=source_identity,
        )

    def _incremental(self, manifest_id: str) -> Manifest:
        parent = self.catalog.latest_good()
        if parent is None:
            raise BackupError(
                "no good backup to build an incremental on: take a full backup first"
            )
        src = self.source
        engine = src.engine()
        try:
            with engine.connect() as raw:
                conn = (
                    raw
                    if src.is_sqlite
                    else raw.execution_options(isolation_level="REPEATABLE READ")
                )
                with conn.begin():
                    if not src.is_sqlite:
                        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
                    manifest = self._describe(
                        manifest_id, "incremental", parent.id, conn
                    )
                    if manifest.source != parent.source:
                        raise BackupError(
                            f"the database is not the one backup {parent.id} was taken "
                            "from: take a full backup first"
                        )
                    if manifest.schema_revision != parent.schema_revision:
                        raise BackupError(
                            f"the schema changed since backup {parent.id} "
                            f"({parent.schema_revision} -> {manifest.schema_revision}): "
                            "take a full backup first"
                        )
                    with tempfile.TemporaryFile() as buf:
                        writer = changes.ChangeWriter(buf)
                        manifest.change_log = changes.capture(
                            conn,
                            parent.change_log,
                            writer,
                            horizon_s=self.config.backup.gap_horizon_s,
                        )
                        writer.close()
                        manifest.change_log["records"] = writer.records
                        manifest.change_log["rows"] = writer.rows
                        present = set(list_tables(conn))
                        columns = {
                            t: c
                            for t, c in changes.compared_columns().items()
                            if t in present
                        }
                        big = {
                            t
                            for t in columns
                            if changes.estimated_rows(conn, t)
                            > changes.FULL_COMPARE_ROWS
                        }
                        manifest.tables = table_stats(
                            conn, {t: c for t, c in columns.items() if t not in big}
                        )
                        for t in big:
                            manifest.tables[t] = writer.carried_stats(t)
                        manifest.excluded_columns = {
                            t: cols
                            for t, cols in changes.VOLATILE.items()
                            if t in present
                        }
                        size = buf.tell()
                        buf.seek(0)
                        key = self.catalog.key(manifest_id, "changes.jsonl.gz")
                        manifest.objects.append(self._upload(key, buf, size, "upload"))
                return manifest
        finally:
            engine.dispose()

    # ------------------------------------------------------------------ verify

    def verify(self, backup_id: str) -> Manifest:
        """Re-read, test-restore and compare one backup; mark it good or bad.

        Raises:
            BackupError: the backup (or its chain) is damaged; the manifest says bad.
        """
        manifest = self.catalog.load(backup_id)
        started = time.monotonic()
        try:
            chain = self.catalog.chain(backup_id)
            self._check_objects(chain)
            with self._scratch() as scratch:
                self._restore_chain(chain, scratch)
                problems = compare_stats(
                    manifest.tables, self._stats(scratch, manifest)
                )
            if problems:
                raise BackupError(f"restored data differs: {'; '.join(problems[:3])}")
        except BackupError as exc:
            manifest.status = "bad"
            manifest.status_reason = exc.message
            manifest.verify_s = round(time.monotonic() - started, 3)
            with contextlib.suppress(Exception):
                self.catalog.save(manifest)
            raise BackupError(
                f"backup {backup_id} failed verification: {exc.message}"
            ) from None
        manifest.status = "good"
        manifest.status_reason = ""
        manifest.verify_s = round(time.monotonic() - started, 3)
        manifest.verified_at = datetime.now(UTC).isoformat()
        self.catalog.save(manifest)
        return manifest

    def _check_objects(self, chain: list[Manifest]) -> None:
        """Every object present, of the recorded size (checksums are re-read as the
        objects stream into the test restore)."""
        for member in chain:
            if not member.objects:
                raise BackupError(f"backup {member.id} has no data objects")
            for entry in member.objects:
                try:
                    info = self.store.stat(entry.key)
                except NotFoundError:
                    raise BackupError(f"object {entry.key} is missing") from None
                if info.size != entry.size:
                    raise BackupError(
                        f"object {entry.key} is {info.size} bytes, expected {entry.size} "
                        "(truncated or replaced)"
                    )

    def _stats(self, target: Target, manifest: Manifest) -> dict[str, dict[str, Any]]:
        engine = target.engine()
        try:
            with engine.connect() as conn, conn.begin():
                if not target.is_sqlite:
                    conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
                if manifest.kind == "full":
                    return table_stats(conn, dict.fromkeys(list_tables(conn)))
                present = set(list_tables(conn))
                carried = {
                    t for t, v in manifest.tables.items() if v.get("scope") == "carried"
                }
                columns = {
                    t: c
                    for t, c in changes.compared_columns().items()
                    if t in present and t not in carried
                }
                stats = table_stats(conn, columns)
                if carried:
                    stats.update(self._carried(conn, manifest, carried))
                return stats
        finally:
            engine.dispose()

    def _carried(
        self, conn: Connection, manifest: Manifest, carried: set[str]
    ) -> dict[str, dict[str, Any]]:
        with tempfile.NamedTemporaryFile(suffix=".jsonl.gz") as tmp:
            path = Path(tmp.name)

            def to_tmp(stream: IO[bytes]) -> None:
                with path.open("wb") as out:
                    shutil.copyfileobj(stream, out, CHUNK)

            self._read_checked(manifest.objects[0], to_tmp)
            return changes.carried_stats(conn, changes.read_records(path), carried)

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Target]:
        if self.source.is_sqlite:
            with tempfile.TemporaryDirectory(prefix="ballast-scratch-") as tmp:
                yield Target.parse(f"sqlite:///{Path(tmp) / 'scratch.db'}")
            return
        server = self.server()
        name = scratch_name()
        target = server.create(name)
        try:
            yield target
        finally:
            server.drop(name)

    def _read_checked(
        self, entry: ObjectEntry, sink: Callable[[IO[bytes]], Any]
    ) -> Any:
        """Stream an object into `sink`, then insist its sha256 matches the manifest."""
        try:
            stream = self.store.open(entry.key)
        except NotFoundError:
            raise BackupError(f"object {entry.key} is missing") from None
        with contextlib.closing(stream):
            reader = CountingReader(stream)
            error: BackupError | None = None
            try:
                result = sink(cast(IO[bytes], reader))
            except BackupError as exc:
                error = exc
                result = None
            while reader.read(CHUNK):  # hash whatever the sink did not read
                pass
        if reader.sha.hexdigest() != entry.sha256 or reader.size != entry.size:
            raise BackupError(f"checksum mismatch in object {entry.key}")
        if error is not None:
            raise error
        return result

    def _restore_chain(self, chain: list[Manifest], dest: Target) -> None:
        full, *incrementals = chain
        total = sum(m.size for m in chain)
        with self.progress(f"restore {chain[-1].id}", total) as advance:
            entry = full.objects[0]
            if dest.is_sqlite:
                dest.path.parent.mkdir(parents=True, exist_ok=True)

                def to_file(stream: IO[bytes]) -> None:
                    with dest.path.open("wb") as out:
                        while chunk := stream.read(CHUNK):
                            out.write(chunk)
                            advance(len(chunk))

                self._read_checked(entry, to_file)
            else:
                self._read_checked(
                    entry,
                    lambda s: pg_restore_stream(
                        dest, s, bindir=self.bindir, progress=advance
                    ),
                )
            for member in incrementals:
                with tempfile.NamedTemporaryFile(suffix=".jsonl.gz") as tmp:
                    path = Path(tmp.name)

                    def to_tmp(stream: IO[bytes], path: Path = path) -> None:
                        with path.open("wb") as out:
                            while chunk := stream.read(CHUNK):
                                out.write(chunk)
                                advance(len(chunk))

                    self._read_checked(member.objects[0], to_tmp)
                    engine = dest.engine()
                    try:
                        with engine.begin() as conn:
                            changes.apply(conn, changes.read_records(path))
                    except (ValueError, OSError) as exc:
                        raise BackupError(
                            f"change set of backup {member.id} cannot be applied: {exc}"
                        ) from None
                    finally:
                        engine.dispose()

    # ------------------------------------------------------------------ restore

    def resolve(self, backup_id: str, until: datetime | None = None) -> list[Manifest]:
        """The chain to restore: `backup_id` ("latest" allowed), cut at `until`."""
        if backup_id == "latest":
            latest = self.catalog.latest_good()
            if latest is None:
                raise BackupError("there is no good backup yet")
            backup_id = latest.id
        chain = self.catalog.chain(backup_id)
        head = chain[-1]
        if head.status != "good":
            raise BackupError(
                f"backup {head.id} is {head.status}"
                + (f" ({head.status_reason})" if head.status_reason else "")
                + ": refusing to restore it"
            )
        if until is not None:
            chain = [m for m in chain if m.created <= until]
            if not chain:
                raise BackupError(
                    f"no backup in the chain of {backup_id} was taken at or before "
                    f"{until.isoformat()}"
                )
        return chain

    def restore(
        self,
        backup_id: str,
        *,
        target: str | None = None,
        until: datetime | None = None,
        force: bool = False,
        on_plan: Callable[[str], None] = lambda _p: None,
    ) -> RestoreResult:
        """Restore a chain into a new database (default), verify it, then switch if
        the target is the configured database (needs `force`).

        Raises:
            BackupError: broken chain, checksum mismatch, a non-empty target without
                `force`, or a restored database that does not match the manifest.
        """
        chain = self.resolve(backup_id, until)
        head = chain[-1]
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        in_place = False
        if target is None:
            dest = self._new_target(stamp)
        else:
            dest = Target.parse(target)
            in_place = self._same(dest, self.source)
            if in_place and not force:
                raise BackupError(
                    "the target is the live database: restoring in place needs --force"
                )
            if not in_place and not is_empty(dest) and not force:
                raise BackupError(
                    f"target {dest.display()} is not empty: use --force to replace it"
                )
        work = self._new_target(stamp) if in_place else dest
        on_plan(
            f"restore {' -> '.join(m.id for m in chain)} into {work.display()}"
            + (f", then switch it in as {dest.display()}" if in_place else "")
        )
        if not in_place and not is_empty(dest):
            self._drop(dest)
        if not dest.is_sqlite and not self.server(work).exists(work.name):
            self.server(work).create(work.name)
        try:
            self._restore_chain(chain, work)
            problems = compare_stats(head.tables, self._stats(work, head))
            if problems:
                raise BackupError(f"restored data differs: {'; '.join(problems[:3])}")
        except BaseException:
            with contextlib.suppress(Exception):
                self._drop(work)
            raise
        previous = None
        if in_place:
            previous = self._switch(work, dest, stamp)
        rows = {t: int(v["rows"]) for t, v in head.tables.items()}
        return RestoreResult(
            target=dest.display(),
            chain=[m.id for m in chain],
            rows=rows,
            switched=in_place,
            previous=previous,
        )

    @staticmethod
    def _same(a: Target, b: Target) -> bool:
        if a.is_sqlite != b.is_sqlite:
            return False
        if a.is_sqlite:
            return a.path == b.path
        return (a.url.host, a.url.port or 5432, a.name) == (
            b.url.host,
            b.url.port or 5432,
            b.name,
        )

    def _new_target(self, stamp: str) -> Target:
        if self.source.is_sqlite:
            path = self.source.path
            return Target.parse(
                f"sqlite:///{path.with_name(f'{path.stem}.restore-{stamp}.db')}"
            )
        return self.server().admin.with_database(f"{self.source.name}_restore_{stamp}")

    def _drop(self, target: Target) -> None:
        if target.is_sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(str(target.path) + suffix).unlink(missing_ok=True)
        else:
            self.server(target).drop(target.name)

    def _switch(self, new: Target, live: Target, stamp: str) -> str | None:
        """Put the verified copy in the live database's place; keep the old one."""
        if live.is_sqlite:
            old: Path | None = None
            if live.path.exists():
                old = live.path.with_name(f"{live.path.stem}.before-restore-{stamp}.db")
                shutil.move(str(live.path), str(old))
            for suffix in ("-wal", "-shm"):
                Path(str(live.path) + suffix).unlink(missing_ok=True)
            shutil.move(str(new.path), str(live.path))
            return None if old is None else str(old)
        server = self.server(live)
        old_name: str | None = None
        if server.exists(live.name):
            old_name = f"{live.name}_before_restore_{stamp}"
            server.rename(live.name, old_name)
        server.rename(new.name, live.name)
        return old_name

    # ------------------------------------------------------------------ drill

    def drill(self) -> dict[str, Any]:
        """Restore the latest good chain into a scratch database, verify, record."""
        started_at = datetime.now(UTC)
        started = time.monotonic()
        record: dict[str, Any] = {"timestamp": started_at.timestamp(), "success": False}
        try:
            chain = self.resolve("latest")
            head = chain[-1]
            record["backup_id"] = head.id
            record["rpo_s"] = round((started_at - head.created).total_seconds(), 3)
            with self._scratch() as scratch:
                self._restore_chain(chain, scratch)
                stats = self._stats(scratch, head)
            problems = compare_stats(head.tables, stats)
            if problems:
                raise BackupError(f"restored data differs: {'; '.join(problems[:3])}")
            record["rows"] = {t: int(v["rows"]) for t, v in stats.items()}
            record["success"] = True
        except BackupError as exc:
            record["error"] = exc.message
            raise
        finally:
            record["duration_s"] = round(time.monotonic() - started, 3)
            with contextlib.suppress(Exception):
                self.catalog.save_drill(record)
        return record

    # ------------------------------------------------------------------ prune

    def prune(self, now: datetime | None = None, *, dry_run: bool = False) -> list[str]:
        """Delete backups retention does not keep; returns the deleted ids."""
        now = now or datetime.now(UTC)
        cfg = self.config.backup
        manifests = self.catalog.all()
        good = [m for m in manifests if m.status == "good"]
        keep: set[str] = set()
        if good:
            keep.add(good[-1].id)
        fulls = [m for m in good if m.kind == "full"]
        if fulls:
            keep.add(fulls[-1].id)
        rules: list[tuple[int, timedelta, Callable[[datetime], Any]]] = [
            (cfg.keep_hourly, timedelta(hours=1), lambda d: d.strftime("%Y%m%d%H")),
            (cfg.keep_daily, timedelta(days=1), lambda d: d.date()),
            (cfg.keep_weekly, timedelta(weeks=1), lambda d: d.isocalendar()[:2]),
        ]
        for count, span, bucket in rules:
            newest: dict[Any, Manifest] = {}
            for m in good:
                if m.created > now - span * count:
                    newest[bucket(m.created)] = m
            keep.update(m.id for m in newest.values())
        by_id = {m.id: m for m in manifests}
        for kept in list(keep):
            parent = by_id[kept].parent_id
            while parent is not None and parent in by_id:
                keep.add(parent)
                parent = by_id[parent].parent_id
        doomed = []
        for m in manifests:
            if m.id in keep:
                continue
            if m.status == "unverified" and m.created > now - timedelta(days=1):
                continue  # may still be running
            doomed.append(m.id)
        if not dry_run:
            for backup_id in doomed:
                self.catalog.delete(backup_id)
        return doomed


@dataclass
class RestoreResult:
    target: str
    chain: list[str]
    rows: dict[str, int]
    switched: bool
    previous: str | None = None


def snapshot_db(kind: Kind = "full", *, config: AppConfig | None = None) -> str:
    """Take a verified backup of the configured database; returns its id."""
    return Backups.from_config(config).snapshot_db(kind).id


def restore(
    snapshot_id: str, *, config: AppConfig | None = None, **kwargs: Any
) -> bool:
    """Restore a backup into a new database (see `Backups.restore`)."""
    Backups.from_config(config).restore(snapshot_id, **kwargs)
    return True


def _stats_in_snapshot(engine: Engine, snapshot: str) -> dict[str, dict[str, Any]]:
    """`table_stats` of every table as of an exported snapshot (a second connection)."""
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # First statement of the transaction, as PostgreSQL requires.
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            return table_stats(conn, dict.fromkeys(list_tables(conn)))
