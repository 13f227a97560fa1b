"""Damaged backups are detected, never marked good, and leave earlier backups intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from ballast_backup.core import Backups
from ballast_backup.manifest import BackupError, Manifest
from ballast_common.storage import LocalObjectStore
from tests.backup.conftest import Env
from tests.backup.helpers import (
    create_projects,
    seed,
    state,
    state_of,
    update_project,
)

pytestmark = pytest.mark.integration


def _chain(env: Env) -> tuple[Backups, Manifest, Manifest]:
    seed(env.db)
    ids = create_projects(env.db, 4, "p")
    backups = env.backups()
    full = backups.snapshot_db("full")
    update_project(env.db, ids[0], name="changed")
    create_projects(env.db, 2, "q")
    incr = backups.snapshot_db("incremental")
    return backups, full, incr


def _file(env: Env, key: str) -> Path:
    assert isinstance(env.store, LocalObjectStore)
    return env.store.root / key


def _assert_refused(
    backups: Backups, bad: Manifest, good: Manifest, match: str
) -> None:
    with pytest.raises(BackupError, match=match):
        backups.verify(bad.id)
    assert backups.catalog.load(bad.id).status == "bad"
    with pytest.raises(BackupError, match=r"is bad|broken chain|missing"):
        backups.restore(bad.id)
    # The earlier backup is untouched and still restores.
    assert backups.verify(good.id).status == "good"


def test_flipped_byte(sqlite_env: Env) -> None:
    backups, full, incr = _chain(sqlite_env)
    path = _file(sqlite_env, incr.objects[0].key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _assert_refused(backups, incr, full, "checksum mismatch")


def test_flipped_byte_in_a_full_dump(pg_env: Env) -> None:
    seed(pg_env.db)
    backups = pg_env.backups()
    first = backups.snapshot_db("full")
    second = backups.snapshot_db("full")
    path = _file(pg_env, second.objects[0].key)
    data = bytearray(path.read_bytes())
    data[len(data) - 100] ^= 0xFF
    path.write_bytes(bytes(data))
    _assert_refused(backups, second, first, "checksum mismatch")


def test_truncated_object(sqlite_env: Env) -> None:
    backups, full, incr = _chain(sqlite_env)
    path = _file(sqlite_env, incr.objects[0].key)
    path.write_bytes(path.read_bytes()[:-7])
    _assert_refused(backups, incr, full, "checksum mismatch|truncated")


def test_missing_object(sqlite_env: Env) -> None:
    backups, full, incr = _chain(sqlite_env)
    sqlite_env.store.delete(incr.objects[0].key)
    _assert_refused(backups, incr, full, f"object {incr.objects[0].key} is missing")


def test_missing_parent(sqlite_env: Env) -> None:
    backups, full, incr = _chain(sqlite_env)
    backups.catalog.delete(full.id)
    with pytest.raises(BackupError, match=f"broken chain: parent {full.id} .* missing"):
        backups.verify(incr.id)
    with pytest.raises(BackupError, match="broken chain"):
        backups.restore(incr.id)


def test_next_incremental_skips_a_bad_one(sqlite_env: Env) -> None:
    backups, full, incr = _chain(sqlite_env)
    sqlite_env.store.delete(incr.objects[0].key)
    with pytest.raises(BackupError):
        backups.verify(incr.id)
    create_projects(sqlite_env.db, 1, "later")
    expected = state(sqlite_env.db)
    again = backups.snapshot_db("incremental")
    assert again.parent_id == full.id
    result = backups.restore(again.id)
    assert state_of(result.target) == expected


def test_unaudited_write_fails_verification(sqlite_env: Env) -> None:
    """A write that bypasses the audited unit of work cannot hide in an incremental."""
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    backups.snapshot_db("full")
    with sqlite_env.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET display_name = 'sneaky'")
    with pytest.raises(BackupError, match="failed verification: restored data differs"):
        backups.snapshot_db("incremental")
    assert [m.status for m in backups.catalog.all()] == ["good", "bad"]
