"""Backup manifests: one JSON object per backup, ``<prefix>/<id>/manifest.json``.

A manifest names everything a restore needs and everything a verification checks:
the kind and parent (the chain), the source database's identity and schema revision,
the sha256 and size of every object, the change-log range it covers, and the per-table
row counts and content checksums of the source at capture time. Its status is
``unverified`` after the upload and becomes ``good`` only once a test restore matched
(``bad`` otherwise, with the reason).

A manifest carries its own checksum: the sha256 of its canonical JSON (sorted keys, no
whitespace) without the ``checksum`` field. A manifest whose checksum does not match
was edited or damaged after it was written and is never trusted.
"""

from __future__ import annotations

import hashlib
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
# 2: the manifest carries its own checksum. Format-1 manifests (written before) have
# none and are read as they are.
FORMAT = 2


class BackupError(AppError):
    """A backup, verification or restore cannot proceed (one-line message)."""

    default_code = "backup_error"


class DamagedManifestError(BackupError):
    """A manifest exists but cannot be trusted: unreadable or failing its checksum."""


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
    # sha256 of the canonical JSON of every other field (see `digest`).
    checksum: str = ""

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["format"] = FORMAT
        data["checksum"] = digest(data)
        self.format, self.checksum = FORMAT, data["checksum"]
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, check: bool = True) -> Manifest:
        """Parse a manifest; with `check`, insist its checksum matches its content.

        Raises:
            ManifestChecksumError: the content does not match the checksum.
            ValueError, TypeError, KeyError: not a manifest.
        """
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        signed = int(data.get("format", 1)) >= 2 or "checksum" in data
        if check and signed and data.get("checksum") != digest(data):
            raise ManifestChecksumError(
                "manifest checksum mismatch (edited or damaged after it was written)"
            )
        data["objects"] = [ObjectEntry(**o) for o in data.get("objects", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class ManifestChecksumError(ValueError):
    """A manifest's content does not match its own checksum."""


def digest(data: dict[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON without its ``checksum`` field."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_problem(manifest: Manifest, by_id: dict[str, Manifest]) -> str | None:
    """Why the chain of a good `manifest` cannot be restored (None: it can).

    The reason starts with ``missing:`` when an ancestor's manifest is not among
    `by_id` (gone or unreadable), with ``bad:`` when an ancestor is not good.
    """
    current = manifest
    seen = {manifest.id}
    while current.parent_id is not None:
        parent = by_id.get(current.parent_id)
        if parent is None:
            return (
                f"missing: parent {current.parent_id} of backup {current.id} is missing"
            )
        if parent.id in seen:
            return f"bad: backup {parent.id} is its own ancestor"
        seen.add(parent.id)
        if parent.status != "good":
            return f"bad: parent {parent.id} of backup {current.id} is {parent.status}"
        current = parent
    if current.kind != "full":
        return f"bad: backup {current.id} has no full backup"
    return None


def id_time(backup_id: str) -> str:
    """The sortable time stamp an id starts with (``20261122T071500Z``)."""
    return backup_id.split("-", 1)[0]


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

    def load(self, backup_id: str, *, check: bool = True) -> Manifest:
        """The manifest of `backup_id`.

        Raises:
            DamagedManifestError: it is unreadable or does not match its checksum
                (with `check`).
            BackupError: there is no such backup.
        """
        try:
            raw = get_bytes(self.store, self.manifest_key(backup_id))
        except NotFoundError:
            raise BackupError(f"backup {backup_id} not found") from None
        try:
            return Manifest.from_json(raw, check=check)
        except ManifestChecksumError as exc:
            raise DamagedManifestError(
                f"manifest of backup {backup_id} fails its checksum: {exc}"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise DamagedManifestError(
                f"manifest of backup {backup_id} is unreadable: {exc}"
            ) from None

    def exists(self, backup_id: str) -> bool:
        return self.store.exists(self.manifest_key(backup_id))

    def _listing(self) -> tuple[list[str], list[str]]:
        """(ids with a manifest, ids with data objects but no manifest), sorted."""
        with_manifest: set[str] = set()
        with_data: set[str] = set()
        for key in self.store.list(self.prefix + "/"):
            parts = key[len(self.prefix) + 1 :].split("/")
            if len(parts) != 2 or parts[0] == "_drills":
                continue
            if parts[1] == "manifest.json":
                with_manifest.add(parts[0])
            else:
                with_data.add(parts[0])
        return sorted(with_manifest), sorted(with_data - with_manifest)

    def ids(self) -> list[str]:
        return self._listing()[0]

    def all(self) -> list[Manifest]:
        """Every readable manifest, oldest first."""
        return self.scan()[0]

    def scan(self) -> tuple[list[Manifest], dict[str, str]]:
        """Every readable manifest (oldest first), and the backups that cannot be
        read: id -> why (manifest missing beside the data objects, unreadable, or
        failing its checksum)."""
        ids, orphans = self._listing()
        result = []
        damaged = {
            i: f"backup {i} has data objects but its manifest is missing"
            for i in orphans
        }
        for backup_id in ids:
            try:
                result.append(self.load(backup_id))
            except DamagedManifestError as exc:
                damaged[backup_id] = exc.message
            except BackupError:
                continue  # deleted while we listed
        return sorted(result, key=lambda m: (m.created_at, m.id)), damaged

    def latest_good(self, kind: Kind | None = None) -> Manifest | None:
        """The newest good backup whose whole chain is good (and present)."""
        manifests = self.all()
        by_id = {m.id: m for m in manifests}
        for m in reversed(manifests):
            if kind is not None and m.kind != kind:
                continue
            if m.status == "good" and chain_problem(m, by_id) is None:
                return m
        return None

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
                    + (f" ({manifest.status_reason})" if manifest.status_reason else "")
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

    def save_drill(self, record: dict[str, Any], name: str = "latest") -> None:
        """Keep the record of the last drill (`name`: latest = logical, pitr = pgBackRest)."""
        raw = json.dumps(record, indent=2, sort_keys=True).encode()
        put_bytes(
            self.store,
            f"{self.prefix}/_drills/{name}.json",
            raw,
            content_type="application/json",
        )

    def last_drill(self, name: str = "latest") -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(
                get_bytes(self.store, f"{self.prefix}/_drills/{name}.json")
            )
        except (NotFoundError, ValueError):
            return None
        return data
