"""Backup manifests: one JSON object per backup, ``<prefix>/<id>/manifest.json``.

A manifest names everything a restore needs and everything a verification checks:
the kind and parent (the chain), the source database's identity and schema revision,
the sha256 and size of every object, the change-log range it covers, and the per-table
row counts and content checksums of the source at capture time. Its status is
``unverified`` after the upload and becomes ``good`` only once a test restore matched
(``bad`` otherwise, with the reason).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ballast_common.errors import AppError, NotFoundError
from ballast_common.storage import ObjectStore, get_bytes, put_bytes

Kind = Literal["full", "incremental"]
Status = Literal["unverified", "good", "bad"]
KINDS: tuple[Kind, ...] = ("full", "incremental")
FORMAT = 1


class BackupError(AppError):
    """A backup, verification or restore cannot proceed (one-line message)."""

    default_code = "backup_error"


@dataclass
class ObjectEntry:
    key: str
    size: int
    sha256: str


@dataclass
class Manifest:
    id: str
    kind: Kind
    parent_id: str | None
    created_at: str
    schema_revision: str | None
    # backend ("postgresql" / "sqlite") and an identity of the source database.
    source: dict[str, str]
    objects: list[ObjectEntry] = field(default_factory=list)
    # audit_log ids covered: (first, last] plus ids still missing (gaps) at capture.
    change_log: dict[str, Any] = field(default_factory=dict)
    # table -> {"rows": n, "checksum": "..."}, of the source at capture time.
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Columns left out of the comparison (written without an audit row).
    excluded_columns: dict[str, list[str]] = field(default_factory=dict)
    status: Status = "unverified"
    status_reason: str = ""
    duration_s: float = 0.0
    verify_s: float = 0.0
    verified_at: str | None = None
    format: int = FORMAT

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        data["objects"] = [ObjectEntry(**o) for o in data.get("objects", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def new_id(kind: Kind, now: datetime | None = None) -> str:
    """Sortable by time: ``20261122T071500Z-full-3fa9``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{kind}-{secrets.token_hex(2)}"


class Catalog:
    """The manifests under one prefix of an object store."""

    def __init__(self, store: ObjectStore, prefix: str = "backups") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def key(self, backup_id: str, name: str) -> str:
        return f"{self.prefix}/{backup_id}/{name}"

    def manifest_key(self, backup_id: str) -> str:
        return self.key(backup_id, "manifest.json")

    def save(self, manifest: Manifest) -> None:
        put_bytes(
            self.store,
            self.manifest_key(manifest.id),
            manifest.to_json(),
            content_type="application/json",
        )

    def load(self, backup_id: str) -> Manifest:
        try:
            raw = get_bytes(self.store, self.manifest_key(backup_id))
        except NotFoundError:
            raise BackupError(f"backup {backup_id} not found") from None
        try:
            return Manifest.from_json(raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(
                f"manifest of backup {backup_id} is unreadable: {exc}"
            ) from None

    def exists(self, backup_id: str) -> bool:
        return self.store.exists(self.manifest_key(backup_id))

    def ids(self) -> list[str]:
        out = []
        for key in self.store.list(self.prefix + "/"):
            rest = key[len(self.prefix) + 1 :]
            parts = rest.split("/")
            if (
                len(parts) == 2
                and parts[1] == "manifest.json"
                and parts[0] != "_drills"
            ):
                out.append(parts[0])
        return sorted(out)

    def all(self) -> list[Manifest]:
        """Every readable manifest, oldest first."""
        result = []
        for backup_id in self.ids():
            try:
                result.append(self.load(backup_id))
            except BackupError:
                continue
        return sorted(result, key=lambda m: (m.created_at, m.id))

    def latest_good(self, kind: Kind | None = None) -> Manifest | None:
        good = [m for m in self.all() if m.status == "good"]
        if kind is not None:
            good = [m for m in good if m.kind == kind]
        return good[-1] if good else None

    def chain(self, backup_id: str) -> list[Manifest]:
        """The full backup and every incremental up to `backup_id`, oldest first.

        Raises:
            BackupError: a member is missing, not good, or the chain has no full.
        """
        chain: list[Manifest] = []
        current: str | None = backup_id
        seen: set[str] = set()
        while current is not None:
            if current in seen:
                raise BackupError(f"broken chain: backup {current} is its own ancestor")
            seen.add(current)
            if not self.exists(current):
                if chain:
                    raise BackupError(
                        f"broken chain: parent {current} of backup {chain[-1].id} is missing"
                    )
                raise BackupError(f"backup {current} not found")
            manifest = self.load(current)
            if manifest.status != "good" and chain:
                raise BackupError(
                    f"broken chain: parent {manifest.id} of backup {chain[-1].id} is "
                    f"{manifest.status}"
                )
            chain.append(manifest)
            current = manifest.parent_id
        if chain[-1].kind != "full":
            raise BackupError(f"broken chain: backup {chain[-1].id} has no full backup")
        chain.reverse()
        return chain

    def delete(self, backup_id: str) -> None:
        for key in self.store.list(f"{self.prefix}/{backup_id}/"):
            if key != self.manifest_key(backup_id):
                self.store.delete(key)
        # The manifest goes last: a half-deleted backup is still listed (and not good).
        self.store.delete(self.manifest_key(backup_id))

    # -- drills -------------------------------------------------------------------

    def save_drill(self, record: dict[str, Any]) -> None:
        raw = json.dumps(record, indent=2, sort_keys=True).encode()
        put_bytes(
            self.store,
            f"{self.prefix}/_drills/latest.json",
            raw,
            content_type="application/json",
        )

    def last_drill(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(
                get_bytes(self.store, f"{self.prefix}/_drills/latest.json")
            )
        except (NotFoundError, ValueError):
            return None
        return data
