"""snapshot_db, verify, restore, drill and prune.

Every backup is verified before it counts: its objects are re-read and checked against
the manifest's sha256, its chain is restored into a scratch database, and the per-table
row counts and content checksums must equal those of the source at capture time. Only
then is the manifest marked ``good``. A damaged object marks the backup it belongs to
``bad``, whichever backup was being verified or restored when it was found.

A restore always goes into a database (or file) of its own making: every manifest and
object of the chain is checked first, the chain is restored into a fresh scratch
database and verified, and only then is it put in place of the target, in one step
(``ALTER DATABASE … RENAME`` twice in one transaction; ``os.replace`` for SQLite). A
failure at any point drops only that scratch copy: a database the restore did not
create is never dropped or changed before the new copy is complete and verified.
"""

from __future__ import annotations

import contextlib
import os
import secrets
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
    pg_name,
    pg_restore_stream,
    schema_revision,
    scratch_name,
    sqlite_copy,
    table_stats,
)
from ballast_backup.manifest import (
    BackupError,
    Catalog,
    DamagedManifestError,
    Kind,
    Manifest,
    ObjectEntry,
    chain_problem,
    id_time,
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
                self.catalog.delete(manifest_id)
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
                    changes.pg_settings(conn)
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
                    changes.pg_settings(conn)
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
                        writer = changes.ChangeWriter(buf, changes.encoding(conn))
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
        try:
            manifest = self.catalog.load(backup_id)
        except DamagedManifestError as exc:
            # Recorded as bad (the manifest is rewritten with its own checksum, so
            # the verdict itself is readable), never trusted again.
            manifest = self.catalog.load(backup_id, check=False)
            manifest.status = "bad"
            manifest.status_reason = exc.message
            with contextlib.suppress(Exception):
                self.catalog.save(manifest)
            raise BackupError(
                f"backup {backup_id} failed verification: {exc.message}"
            ) from None
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
        objects stream into the test restore). A damaged member is marked bad."""
        for member in chain:
            if not member.objects:
                raise self._mark_bad(member, f"backup {member.id} has no data objects")
            for entry in member.objects:
                try:
                    info = self.store.stat(entry.key)
                except NotFoundError:
                    raise self._mark_bad(
                        member, f"object {entry.key} is missing"
                    ) from None
                if info.size != entry.size:
                    raise self._mark_bad(
                        member,
                        f"object {entry.key} is {info.size} bytes, expected "
                        f"{entry.size} (truncated or replaced)",
                    )

    def _mark_bad(self, member: Manifest, reason: str) -> BackupError:
        """Record that `member` is damaged (wherever that was found); returns the
        error to raise."""
        with contextlib.suppress(Exception):
            current = self.catalog.load(member.id)
            current.status = "bad"
            current.status_reason = reason
            self.catalog.save(current)
        member.status, member.status_reason = "bad", reason
        return BackupError(reason)

    def _stats(self, target: Target, manifest: Manifest) -> dict[str, dict[str, Any]]:
        engine = target.engine()
        try:
            with engine.connect() as conn, conn.begin():
                changes.pg_settings(conn)
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

            self._read_checked(manifest, manifest.objects[0], to_tmp)
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
        self, owner: Manifest, entry: ObjectEntry, sink: Callable[[IO[bytes]], Any]
    ) -> Any:
        """Stream an object of `owner` into `sink`, then insist its sha256 matches the
        manifest (a mismatch marks `owner` bad)."""
        try:
            stream = self.store.open(entry.key)
        except NotFoundError:
            raise self._mark_bad(owner, f"object {entry.key} is missing") from None
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
            raise self._mark_bad(owner, f"checksum mismatch in object {entry.key}")
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

                self._read_checked(full, entry, to_file)
            else:
                self._read_checked(
                    full,
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

                    self._read_checked(member, member.objects[0], to_tmp)
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

    def resolve(
        self,
        backup_id: str,
        until: datetime | None = None,
        *,
        allow_older: bool = False,
        on_note: Callable[[str], None] = lambda _n: None,
    ) -> list[Manifest]:
        """The chain to restore: `backup_id` ("latest" allowed), cut at `until`.

        "latest" is the newest good backup whose whole chain is good. Newer backups
        known to be bad are skipped (and named through `on_note`); a newer backup whose
        manifest is missing or unreadable is an error unless `allow_older`.
        """
        if backup_id == "latest":
            backup_id = self._latest(allow_older, on_note).id
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

    def _latest(self, allow_older: bool, on_note: Callable[[str], None]) -> Manifest:
        manifests, damaged = self.catalog.scan()
        by_id = {m.id: m for m in manifests}
        skipped: list[str] = []
        chosen: Manifest | None = None
        for m in reversed(manifests):
            if m.status != "good":
                if m.status == "bad":
                    skipped.append(f"{m.id} (bad: {m.status_reason or 'no reason'})")
                continue
            problem = chain_problem(m, by_id)
            if problem is None:
                chosen = m
                break
            kind, _, reason = problem.partition(": ")
            if kind == "missing":
                damaged[m.id] = reason
            else:
                skipped.append(f"{m.id} ({reason})")
        newer = sorted(
            (i, why)
            for i, why in damaged.items()
            if chosen is None or id_time(i) >= id_time(chosen.id)
        )
        if newer and not allow_older:
            first_id, why = newer[-1]
            older = f"restore {chosen.id}" if chosen else "restore an older backup"
            raise BackupError(
                f"the newest backup cannot be read: {why}; nothing was restored "
                f"(pass --allow-older to {older} anyway, or restore {first_id}'s "
                "manifest)"
            )
        if chosen is None:
            raise BackupError("there is no good backup yet")
        if skipped:
            on_note(f"skipped newer backups: {', '.join(skipped)}")
        for backup_id, why in newer:
            on_note(f"skipped newer backup {backup_id}: {why} (--allow-older)")
        return chosen

    def restore(
        self,
        backup_id: str,
        *,
        target: str | None = None,
        until: datetime | None = None,
        force: bool = False,
        allow_older: bool = False,
        on_plan: Callable[[str], None] = lambda _p: None,
    ) -> RestoreResult:
        """Restore a chain into a new database (default) or in place of `target`.

        Every manifest and object of the chain is checked, then the chain is
        restored into a scratch database of its own and verified; only then does it
        replace the target (renamed in one step; the live database is kept as
        ``<db>_before_restore_<time>``, any other replaced target is dropped). A
        failure drops only the scratch copy.

        Raises:
            BackupError: broken chain, checksum mismatch, a non-empty target without
                `force`, or a restored database that does not match the manifest.
        """
        chain = self.resolve(backup_id, until, allow_older=allow_older, on_note=on_plan)
        head = chain[-1]
        # Everything that can be checked without reading the data, before anything
        # is created; the checksums are checked as the objects stream into scratch.
        self._check_objects(chain)
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
            if not in_place and not force and not is_empty(dest):
                raise BackupError(
                    f"target {dest.display()} is not empty: use --force to replace it"
                )
        work = self._work_target(dest)
        on_plan(
            f"restore {' -> '.join(m.id for m in chain)} into {work.display()}, "
            f"verify, then put it in place as {dest.display()}"
        )
        if not work.is_sqlite:
            self.server(work).create(work.name)
        try:
            self._restore_chain(chain, work)
            problems = compare_stats(head.tables, self._stats(work, head))
            if problems:
                raise BackupError(f"restored data differs: {'; '.join(problems[:3])}")
            previous = self._put_in_place(work, dest, stamp, keep_old=in_place)
        except BaseException:
            with contextlib.suppress(Exception):
                self._drop(work)
            raise
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
        return self.server().admin.with_database(
            pg_name(self.source.name, f"_restore_{stamp}")
        )

    def _work_target(self, dest: Target) -> Target:
        """A fresh scratch database (file) beside `dest`, for it to be renamed."""
        token = secrets.token_hex(4)
        if dest.is_sqlite:
            # Same directory: os.replace is then one atomic rename.
            return Target.parse(
                f"sqlite:///{dest.path.with_name(f'{dest.path.name}.restoring-{token}')}"
            )
        return self.server(dest).admin.with_database(
            pg_name(dest.name, f"_restoring_{token}")
        )

    def _drop(self, target: Target) -> None:
        if target.is_sqlite:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(target.path) + suffix).unlink(missing_ok=True)
        else:
            self.server(target).drop(target.name)

    def _put_in_place(
        self, work: Target, dest: Target, stamp: str, *, keep_old: bool
    ) -> str | None:
        """Put the verified copy `work` where `dest` is, in one step.

        Returns where the replaced database is kept (`keep_old`), else None (it is
        dropped once the copy is in place).
        """
        if dest.is_sqlite:
            old: Path | None = None
            live = dest.path
            if keep_old and live.exists() and live.stat().st_size > 0:
                # The online backup API: a consistent copy, WAL contents included.
                old = live.with_name(f"{live.stem}.before-restore-{stamp}.db")
                sqlite_copy(live, old)
            # A WAL left beside the new file would be replayed into it.
            for suffix in ("-wal", "-shm", "-journal"):
                Path(str(live) + suffix).unlink(missing_ok=True)
            os.replace(work.path, live)
            return None if old is None else str(old)
        server = self.server(dest)
        if not server.exists(dest.name):
            server.rename(work.name, dest.name)
            return None
        old_name = pg_name(dest.name, f"_before_restore_{stamp}")
        server.swap(dest.name, work.name, old_name)
        if keep_old:
            return old_name
        server.drop(old_name)
        return None

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
        by_id = {m.id: m for m in manifests}
        # Only backups that can be restored count: good, with every ancestor good.
        # A chain broken by a missing manifest is left alone (a person decides).
        problems = {
            m.id: chain_problem(m, by_id) for m in manifests if m.status == "good"
        }
        good = [m for m in manifests if m.id in problems and problems[m.id] is None]
        broken = {
            i for i, why in problems.items() if why and why.startswith("missing:")
        }
        keep: set[str] = set(broken)
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
            changes.pg_settings(conn)
            return table_stats(conn, dict.fromkeys(list_tables(conn)))
