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

The work is split by part: snapshot.py, verify.py, restore.py, retention.py; `Backups`
puts them together.
"""

from __future__ import annotations

from typing import Any

from ballast_backup.base import BackupsBase, ProgressFactory, no_progress
from ballast_backup.dbio import Target
from ballast_backup.manifest import Kind
from ballast_backup.restore import RestoreOps, RestoreResult
from ballast_backup.retention import RetentionOps
from ballast_backup.snapshot import SnapshotOps
from ballast_backup.verify import VerifyOps
from ballast_common.config import AppConfig, load_config
from ballast_common.storage import ObjectStore, open_store


class Backups(SnapshotOps, VerifyOps, RestoreOps, RetentionOps):
    """Backups of one database into one object store: `snapshot_db`, `verify`,
    `restore`, `drill`, `prune`."""

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


def snapshot_db(kind: Kind = "full", *, config: AppConfig | None = None) -> str:
    """Take a verified backup of the configured database; returns its id."""
    return Backups.from_config(config).snapshot_db(kind).id


def restore(
    snapshot_id: str, *, config: AppConfig | None = None, **kwargs: Any
) -> bool:
    """Restore a backup into a new database (see `Backups.restore`)."""
    Backups.from_config(config).restore(snapshot_id, **kwargs)
    return True


__all__ = [
    "Backups",
    "BackupsBase",
    "ProgressFactory",
    "RestoreResult",
    "no_progress",
    "restore",
    "snapshot_db",
]
