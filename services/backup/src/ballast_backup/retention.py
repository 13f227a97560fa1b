"""Retention: which backups `prune` keeps (newest per hour / day / ISO week, the
last good full and everything a kept incremental depends on) and deletes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ballast_backup.base import BackupsBase
from ballast_backup.manifest import Manifest, chain_problem


class RetentionOps(BackupsBase):
    """The retention policy."""

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
