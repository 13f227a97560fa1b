"""Taking backups: a full (pg_dump from an exported snapshot, or SQLite's online
backup) or an incremental (the audited changes since its parent), uploaded with
checksums and then verified before it counts."""

from __future__ import annotations

import contextlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine

from ballast_backup import changes
from ballast_backup.base import BackupsBase
from ballast_backup.dbio import (
    CountingReader,
    Target,
    database_size,
    identity,
    list_tables,
    pg_dump_stream,
    schema_revision,
    sqlite_copy,
    table_stats,
)
from ballast_backup.manifest import BackupError, Kind, Manifest, ObjectEntry, new_id


class SnapshotOps(BackupsBase):
    """Full and incremental backups."""

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


def _stats_in_snapshot(engine: Engine, snapshot: str) -> dict[str, dict[str, Any]]:
    """`table_stats` of every table as of an exported snapshot (a second connection)."""
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # First statement of the transaction, as PostgreSQL requires.
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            changes.pg_settings(conn)
            return table_stats(conn, dict.fromkeys(list_tables(conn)))
