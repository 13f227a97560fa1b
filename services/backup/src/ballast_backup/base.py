"""The state the parts of `Backups` share (see core.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ballast_backup.dbio import Server, Target
from ballast_backup.manifest import Catalog, Manifest
from ballast_common.config import AppConfig
from ballast_common.storage import ObjectStore

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
class BackupsBase:
    """What every part of `Backups` shares: the configuration, the object store, the
    source database and the catalog; and the operations one part uses of another."""

    config: AppConfig
    store: ObjectStore
    source: Target
    progress: ProgressFactory = no_progress
    catalog: Catalog = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.store, self.config.backup.prefix)

    @property
    def bindir(self) -> Path | None:
        return self.config.backup.pg_bindir

    @property
    def restore_jobs(self) -> int:
        """pg_restore processes for a full (`backup.restore_jobs`; 0: CPUs, at most 4)."""
        jobs = self.config.backup.restore_jobs
        if jobs:
            return jobs
        return max(1, min(4, len(os.sched_getaffinity(0))))

    def server(self, target: Target | None = None) -> Server:
        return Server.for_target(target or self.source, self.config.backup.scratch_url)

    # Implemented by the parts (verify.py, restore.py); declared here for the others.
    def verify(self, backup_id: str) -> Manifest:
        raise NotImplementedError

    def _check_objects(self, chain: list[Manifest]) -> None:
        raise NotImplementedError

    def _restore_chain(self, chain: list[Manifest], dest: Target) -> None:
        raise NotImplementedError

    def _stats(self, target: Target, manifest: Manifest) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def _scratch(self) -> AbstractContextManager[Target]:
        raise NotImplementedError
