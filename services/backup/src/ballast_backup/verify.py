"""Verification: every object is re-read against the manifest's sha256 (a damaged one
marks its backup bad wherever it is found), and the chain is restored into a scratch
database whose per-table row counts and checksums must equal the source's."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import Connection

from ballast_backup import changes
from ballast_backup.base import BackupsBase
from ballast_backup.dbio import (
    CHUNK,
    CountingReader,
    Target,
    compare_stats,
    list_tables,
    pg_restore_file,
    pg_restore_stream,
    scratch_name,
    table_stats,
)
from ballast_backup.manifest import (
    BackupError,
    DamagedManifestError,
    Manifest,
    ObjectEntry,
)
from ballast_common.errors import NotFoundError


class VerifyOps(BackupsBase):
    """Checked reads, test restores into scratch databases, and their comparison."""

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
                # Each table's checksum the way the manifest's was computed.
                methods = {t: v.get("method") for t, v in manifest.tables.items()}
                if manifest.kind == "full":
                    return table_stats(conn, dict.fromkeys(list_tables(conn)), methods)
                present = set(list_tables(conn))
                carried = {
                    t for t, v in manifest.tables.items() if v.get("scope") == "carried"
                }
                columns = {
                    t: c
                    for t, c in changes.compared_columns().items()
                    if t in present and t not in carried
                }
                stats = table_stats(conn, columns, methods)
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

    def _restore_parallel(
        self,
        full: Manifest,
        entry: ObjectEntry,
        dest: Target,
        advance: Callable[[int], None],
    ) -> None:
        """The full's dump copied to a temporary file and checked against its sha256
        first (nothing of a damaged dump reaches the database), then restored by
        `restore_jobs` pg_restore workers."""
        with tempfile.TemporaryDirectory(prefix="ballast-restore-") as tmp:
            dump = Path(tmp) / "full.pgc"
            self._read_checked(full, entry, _to_file(dump, advance))
            pg_restore_file(dest, dump, jobs=self.restore_jobs, bindir=self.bindir)

    def _restore_chain(self, chain: list[Manifest], dest: Target) -> None:
        full, *incrementals = chain
        total = sum(m.size for m in chain)
        with self.progress(f"restore {chain[-1].id}", total) as advance:
            entry = full.objects[0]
            if dest.is_sqlite:
                dest.path.parent.mkdir(parents=True, exist_ok=True)
                self._read_checked(full, entry, _to_file(dest.path, advance))
            elif self.restore_jobs > 1:
                self._restore_parallel(full, entry, dest, advance)
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
                    self._read_checked(
                        member, member.objects[0], _to_file(path, advance)
                    )
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


def _to_file(path: Path, advance: Callable[[int], None]) -> Callable[[IO[bytes]], None]:
    """A sink writing a stream to `path`, reporting each chunk to `advance`."""

    def sink(stream: IO[bytes]) -> None:
        with path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
                advance(len(chunk))

    return sink
