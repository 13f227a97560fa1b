"""Recovery never destroys or hides data: a failed restore leaves every database it did
not create as it was, corruption is recorded where it is found, and a damaged catalog
is reported instead of silently restoring something older."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from ballast_backup.cli import app
from ballast_backup.core import Backups
from ballast_backup.dbio import Server, Target
from ballast_backup.manifest import BackupError, Manifest
from ballast_common.storage import LocalObjectStore
from ballast_testing.servers import PostgresServer
from tests.backup.conftest import Env
from tests.backup.helpers import create_projects, seed, state, state_of

pytestmark = pytest.mark.integration


def _file(env: Env, key: str) -> Path:
    assert isinstance(env.store, LocalObjectStore)
    return env.store.root / key


def _flip(env: Env, manifest: Manifest, offset_from_end: int = 100) -> None:
    path = _file(env, manifest.objects[0].key)
    data = bytearray(path.read_bytes())
    data[max(0, len(data) - offset_from_end)] ^= 0xFF
    path.write_bytes(bytes(data))


def _pg_rows(server: PostgresServer, name: str) -> list[tuple[object, ...]]:
    with server.connect(name) as conn:
        return list(conn.execute("SELECT id, note FROM keepme ORDER BY id"))


def _pg_target(server: PostgresServer, name: str, *, rows: bool) -> str:
    url = server.create_database(name)
    if rows:
        with server.connect(name) as conn:
            conn.execute("CREATE TABLE keepme (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO keepme VALUES (1, 'precious'), (2, 'also')")
    return url


def _pg_exists(server: PostgresServer, name: str) -> bool:
    with server.connect() as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return row is not None


# ---------------------------------------------------------------- failed restores


@pytest.mark.parametrize("jobs", [1, 2])
def test_flipped_byte_with_force_keeps_a_non_empty_pg_target(
    pg_env: Env, postgres_server: PostgresServer, jobs: int
) -> None:
    """Streamed into one pg_restore or copied first for parallel workers."""
    seed(pg_env.db)
    backups = pg_env.backups(restore_jobs=jobs)
    full = backups.snapshot_db("full")
    _flip(pg_env, full)
    name = f"{pg_env.db.url.database}_target"
    url = _pg_target(postgres_server, name, rows=True)
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.restore(full.id, target=url, force=True)
    assert _pg_rows(postgres_server, name) == [(1, "precious"), (2, "also")]


def test_failed_restore_keeps_an_empty_precreated_pg_target(
    pg_env: Env, postgres_server: PostgresServer
) -> None:
    seed(pg_env.db)
    backups = pg_env.backups()
    full = backups.snapshot_db("full")
    _flip(pg_env, full)
    name = f"{pg_env.db.url.database}_empty"
    url = _pg_target(postgres_server, name, rows=False)
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.restore(full.id, target=url)
    assert _pg_exists(postgres_server, name)
    # And no half-restored scratch database is left behind.
    with postgres_server.connect() as conn:
        left = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (f"{pg_env.db.url.database}%",),
            )
        ]
    assert sorted(left) == sorted([str(pg_env.db.url.database), name])


def test_failed_in_place_restore_keeps_the_live_pg_database(pg_env: Env) -> None:
    seed(pg_env.db)
    create_projects(pg_env.db, 3, "live")
    backups = pg_env.backups()
    full = backups.snapshot_db("full")
    before = state(pg_env.db)
    _flip(pg_env, full)
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.restore(full.id, target=str(pg_env.db.url), force=True)
    assert state(pg_env.db) == before


def test_forced_pg_restore_replaces_the_target_only_once_verified(
    pg_env: Env, postgres_server: PostgresServer
) -> None:
    seed(pg_env.db)
    create_projects(pg_env.db, 2, "src")
    expected = state(pg_env.db)
    backups = pg_env.backups()
    full = backups.snapshot_db("full")
    name = f"{pg_env.db.url.database}_target"
    url = _pg_target(postgres_server, name, rows=True)
    with pytest.raises(BackupError, match="not empty: use --force"):
        backups.restore(full.id, target=url)
    assert _pg_rows(postgres_server, name) == [(1, "precious"), (2, "also")]
    result = backups.restore(full.id, target=url, force=True)
    assert not result.switched
    assert state_of(url) == expected
    with postgres_server.connect() as conn:
        left = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (f"{pg_env.db.url.database}%",),
            )
        ]
    # The replaced database is gone, and no scratch copy is left behind.
    assert sorted(left) == sorted([str(pg_env.db.url.database), name])


def test_flipped_byte_with_force_keeps_a_sqlite_target(
    sqlite_env: Env, tmp_path: Path
) -> None:
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    full = backups.snapshot_db("full")
    _flip(sqlite_env, full, offset_from_end=2000)
    target = tmp_path / "other.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE keepme (note text)")
        conn.execute("INSERT INTO keepme VALUES ('precious')")
    conn.close()
    before = target.read_bytes()
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.restore(full.id, target=f"sqlite:///{target}", force=True)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob("other*")) == ["other.db"]


def test_failed_restore_keeps_an_empty_precreated_sqlite_file(
    sqlite_env: Env, tmp_path: Path
) -> None:
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    full = backups.snapshot_db("full")
    _flip(sqlite_env, full, offset_from_end=2000)
    target = tmp_path / "empty.db"
    target.touch()
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.restore(full.id, target=f"sqlite:///{target}")
    assert target.exists()
    assert sorted(p.name for p in tmp_path.glob("empty*")) == ["empty.db"]


def test_forced_sqlite_restore_replaces_the_target(
    sqlite_env: Env, tmp_path: Path
) -> None:
    seed(sqlite_env.db)
    expected = state(sqlite_env.db)
    backups = sqlite_env.backups()
    full = backups.snapshot_db("full")
    target = tmp_path / "other.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE keepme (note text)")
    conn.close()
    backups.restore(full.id, target=f"sqlite:///{target}", force=True)
    assert state_of(f"sqlite:///{target}") == expected
    assert sorted(p.name for p in tmp_path.glob("other*")) == ["other.db"]


def test_in_place_sqlite_restore_keeps_the_previous_file(sqlite_env: Env) -> None:
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    full = backups.snapshot_db("full")
    expected = state(sqlite_env.db)
    create_projects(sqlite_env.db, 2, "after")
    after = state(sqlite_env.db)
    sqlite_env.db.dispose()
    result = backups.restore(full.id, target=str(sqlite_env.db.url), force=True)
    assert result.switched
    assert result.previous is not None
    assert state_of(str(sqlite_env.db.url)) == expected
    assert state_of(f"sqlite:///{result.previous}") == after


# ---------------------------------------------------------------- corruption is recorded


def _two_chains(env: Env) -> tuple[Backups, Manifest, Manifest, Manifest]:
    seed(env.db)
    backups = env.backups()
    old = backups.snapshot_db("full")
    create_projects(env.db, 2, "a")
    full = backups.snapshot_db("full")
    create_projects(env.db, 2, "b")
    incr = backups.snapshot_db("incremental")
    assert incr.parent_id == full.id
    return backups, old, full, incr


def test_verifying_an_incremental_marks_its_corrupt_full_bad(sqlite_env: Env) -> None:
    backups, old, full, incr = _two_chains(sqlite_env)
    _flip(sqlite_env, full, offset_from_end=2000)
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.verify(incr.id)
    assert backups.catalog.load(full.id).status == "bad"
    assert "checksum mismatch" in backups.catalog.load(full.id).status_reason
    # Nothing picks the corrupt full any more.
    assert backups.resolve("latest")[-1].id == old.id
    create_projects(sqlite_env.db, 1, "c")
    again = backups.snapshot_db("incremental")
    assert again.parent_id == old.id
    assert full.id in backups.prune(dry_run=True)


def test_restoring_an_incremental_marks_its_corrupt_full_bad(sqlite_env: Env) -> None:
    backups, old, full, incr = _two_chains(sqlite_env)
    _flip(sqlite_env, full, offset_from_end=2000)
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.restore(incr.id)
    assert backups.catalog.load(full.id).status == "bad"
    # The incremental itself is intact, but its chain is not: latest skips it.
    plans: list[str] = []
    result = backups.restore("latest", on_plan=plans.append)
    assert result.chain == [old.id]
    assert any(incr.id in p and "skipped" in p for p in plans)
    doomed = backups.prune(dry_run=True)
    assert full.id in doomed
    assert old.id not in doomed


def test_a_missing_object_of_a_full_marks_it_bad(sqlite_env: Env) -> None:
    backups, old, full, _incr = _two_chains(sqlite_env)
    sqlite_env.store.delete(full.objects[0].key)
    with pytest.raises(BackupError, match="is missing"):
        backups.restore("latest")
    assert backups.catalog.load(full.id).status == "bad"
    assert backups.resolve("latest")[-1].id == old.id


# ---------------------------------------------------------------- missing manifests


def test_restore_latest_refuses_when_the_newest_manifest_is_gone(
    sqlite_env: Env,
) -> None:
    backups, _old, full, incr = _two_chains(sqlite_env)
    sqlite_env.store.delete(backups.catalog.manifest_key(incr.id))
    with pytest.raises(BackupError, match=f"{incr.id}.*manifest is missing"):
        backups.restore("latest")
    with pytest.raises(BackupError, match="--allow-older"):
        backups.drill()
    result = backups.restore("latest", allow_older=True)
    assert result.chain == [full.id]


def test_restore_latest_refuses_when_the_newest_manifest_is_unreadable(
    sqlite_env: Env,
) -> None:
    backups, _old, full, incr = _two_chains(sqlite_env)
    _file(sqlite_env, backups.catalog.manifest_key(incr.id)).write_text("{not json")
    with pytest.raises(BackupError, match=f"{incr.id}.*unreadable"):
        backups.restore("latest")
    assert backups.restore("latest", allow_older=True).chain == [full.id]


def test_cli_restore_latest_with_a_missing_manifest(
    sqlite_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    backups, _old, full, incr = _two_chains(sqlite_env)
    sqlite_env.store.delete(backups.catalog.manifest_key(incr.id))
    monkeypatch.setenv("BALLAST_DATABASE__URL", str(sqlite_env.db.url))
    monkeypatch.setenv("BALLAST_PATHS__DATA_DIR", str(sqlite_env.config.paths.data_dir))
    monkeypatch.delenv("BALLAST_S3__ENDPOINT_URL", raising=False)
    runner = CliRunner()
    refused = runner.invoke(app, ["restore", "latest"])
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.startswith("error: ")
    assert "manifest is missing" in refused.stderr
    assert "--allow-older" in refused.stderr
    allowed = runner.invoke(app, ["restore", "latest", "--allow-older"])
    assert allowed.exit_code == 0, allowed.output
    assert f"restored {full.id}" in allowed.stdout
    assert "skipped newer backup" in allowed.stderr
    listing = runner.invoke(app, ["list"])
    assert listing.exit_code == 0, listing.output
    assert f"{incr.id}  ?" in listing.stdout
    assert "damaged" in listing.stdout


def test_prune_leaves_chains_broken_by_a_missing_manifest_to_a_person(
    sqlite_env: Env,
) -> None:
    backups, old, full, incr = _two_chains(sqlite_env)
    sqlite_env.store.delete(backups.catalog.manifest_key(full.id))
    doomed = backups.prune(dry_run=True)
    assert incr.id not in doomed
    assert backups.catalog.latest_good() == backups.catalog.load(old.id)
    # The orphaned data objects of the full are not touched either.
    backups.prune()
    assert sqlite_env.store.exists(full.objects[0].key)
    assert backups.catalog.exists(incr.id)


# ---------------------------------------------------------------- manifest checksum


def test_manifest_carries_its_own_checksum(sqlite_env: Env) -> None:
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    full = backups.snapshot_db("full")
    raw = json.loads(
        _file(sqlite_env, backups.catalog.manifest_key(full.id)).read_text()
    )
    assert len(raw["checksum"]) == 64
    assert backups.catalog.load(full.id).checksum == raw["checksum"]


def test_manifests_without_a_checksum_are_read_as_before(sqlite_env: Env) -> None:
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    full = backups.snapshot_db("full")
    path = _file(sqlite_env, backups.catalog.manifest_key(full.id))
    raw = json.loads(path.read_text())
    del raw["checksum"]
    raw["format"] = 1
    path.write_text(json.dumps(raw))
    assert backups.catalog.load(full.id).status == "good"
    assert backups.verify(full.id).checksum  # rewritten with its checksum


def test_an_edited_manifest_is_detected(sqlite_env: Env) -> None:
    seed(sqlite_env.db)
    backups = sqlite_env.backups()
    full = backups.snapshot_db("full")
    path = _file(sqlite_env, backups.catalog.manifest_key(full.id))
    raw = json.loads(path.read_text())
    raw["tables"]["users"]["rows"] = 2
    path.write_text(json.dumps(raw))
    with pytest.raises(BackupError, match=r"manifest.*checksum"):
        backups.verify(full.id)
    assert backups.catalog.load(full.id).status == "bad"
    with pytest.raises(BackupError, match="is bad"):
        backups.restore(full.id)


def test_pg_restore_leaves_no_connection_to_the_replaced_database(
    pg_env: Env, postgres_server: PostgresServer
) -> None:
    seed(pg_env.db)
    backups = pg_env.backups()
    full = backups.snapshot_db("full")
    name = f"{pg_env.db.url.database}_busy"
    url = _pg_target(postgres_server, name, rows=True)
    # A client still connected to the target does not stop the swap.
    with postgres_server.connect(name) as busy:
        busy.execute("SELECT 1")
        backups.restore(full.id, target=url, force=True)
        with pytest.raises(psycopg.OperationalError):
            busy.execute("SELECT 1")
    assert state_of(url) == state(pg_env.db)


def test_pg_swap_is_all_or_nothing(
    pg_env: Env, postgres_server: PostgresServer
) -> None:
    name = f"{pg_env.db.url.database}_live"
    _pg_target(postgres_server, name, rows=True)
    server = Server(Target.parse(postgres_server.url_for("postgres")))
    # The second rename fails (no such database): the first is rolled back with it.
    with pytest.raises(psycopg.errors.InvalidCatalogName):
        server.swap(name, f"{name}_nonexistent", f"{name}_old")
    assert not _pg_exists(postgres_server, f"{name}_old")
    assert _pg_rows(postgres_server, name) == [(1, "precious"), (2, "also")]
