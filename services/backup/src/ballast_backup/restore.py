"""Restores: resolve a chain (refusing a missing newer manifest unless told to go
older), restore it into a scratch database, verify it, and only then put it in place of
the target in one step; drills do the same into a scratch database and record it."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ballast_backup.base import BackupsBase
from ballast_backup.dbio import Target, compare_stats, is_empty, pg_name, sqlite_copy
from ballast_backup.manifest import BackupError, Manifest, chain_problem, id_time


@dataclass
class RestoreResult:
    target: str
    chain: list[str]
    rows: dict[str, int]
    switched: bool
    previous: str | None = None


class RestoreOps(BackupsBase):
    """Restore into a new or the live database, and restore drills."""

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
