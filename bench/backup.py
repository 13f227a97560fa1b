"""Backups of a >= 1 GB PostgreSQL database against raw pg_dump / pg_restore.

A throwaway cluster gets the Ballast schema and ~1.1 GB of projects made with
generate_series. Measured in the same run, on the same database:

- backup_s: `ballast backup create --kind full` minus the verification (pg_dump from an
  exported snapshot streamed into the local object store, sha256, table checksums);
- raw_dump_s: `pg_dump -Fc -f` of the same database to local disk;
- verify_s: the backup's verification (test restore into a scratch database + compare);
- restore_s: restore into a new database, including its verification;
- raw_restore_s: `pg_restore -d` of the raw dump into an empty database;
  both are the median of three runs, alternating which goes first, each after a
  CHECKPOINT (`restore_runs_s`, `raw_restore_runs_s` list them);
- incr_1k_s / incr_100k_s: an incremental (capture + upload) after 1,000 / 100,000
  audited row changes (made in SQL, one audit row each, like the unit of work writes);
- pitr_backup_s: a pgBackRest full backup of the whole cluster (WAL archiving on,
  repository on local disk, lz4, process-max 2);
- pitr_restore_s: `ballast backup pitr restore` of it to the end of the archived WAL
  into a new data directory, including starting that copy and verifying it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ballast_backup.core import Backups
from ballast_backup.dbio import find_pg_tool
from ballast_backup.pitr import Pitr
from ballast_common.config import load_config
from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from ballast_common.storage import LocalObjectStore
from ballast_testing.servers import LocalPostgres
from bench.common import write_result

TARGET_BYTES = 1_100_000_000
# Restores are timed this many times each, alternating with raw pg_restore; the
# medians are compared (one pair of runs differed by up to 30 % on a shared machine).
RESTORE_ROUNDS = 3
BATCH_ROWS = 500_000


def _fill(db: DB) -> int:
    """Projects with ~330 bytes of text each until the database passes TARGET_BYTES."""
    start = 0
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while True:
            size = int(
                conn.exec_driver_sql(
                    "SELECT pg_database_size(current_database())"
                ).scalar_one()
            )
            if size >= TARGET_BYTES:
                conn.exec_driver_sql("VACUUM ANALYZE")
                return size
            conn.exec_driver_sql(
                "INSERT INTO projects (id, name, description, status, priority, "
                "budget, tags, is_public, version, created_at, updated_at) "
                "SELECT gen_random_uuid(), 'project ' || g, "
                "repeat(md5(g::text), 5) || ' ' || md5(random()::text) || "
                "md5(random()::text), "
                "(ARRAY['draft','active','archived'])[1 + mod(g, 3)], 1 + mod(g, 5), "
                "g * 1.5, jsonb_build_array('t' || mod(g, 10)), mod(g, 2) = 0, 1, "
                "now(), now() "
                f"FROM generate_series({start + 1}, {start + BATCH_ROWS}) AS g"
            )
            start += BATCH_ROWS


def _audited_changes(db: DB, n: int, tag: str) -> None:
    """n updates, each with the audit row the unit of work would write."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "WITH picked AS (SELECT id FROM projects ORDER BY random() LIMIT %(n)s), "
            "changed AS (UPDATE projects p SET name = p.name || %(tag)s, "
            "version = p.version + 1, updated_at = now() FROM picked "
            "WHERE p.id = picked.id RETURNING p.id, p.name, p.version) "
            "INSERT INTO audit_log (action, resource_type, resource_id, new_values, "
            "timestamp) SELECT 'update', 'projects', id::text, "
            "jsonb_build_object('name', name, 'version', version), now() FROM changed",
            {"n": n, "tag": tag},
        )


def _timed(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.monotonic() - started


def _pitr(pg: LocalPostgres) -> tuple[float, float]:
    """Turn WAL archiving on, take a pgBackRest full backup, restore it elsewhere."""
    state = pg.base_dir / "pgbackrest"
    conf = state / "pgbackrest.conf"
    pg.stop()
    pg.settings.update(
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"'pgbackrest --config={conf} --stanza=ballast archive-push %p'",
        }
    )
    pg.start()
    cfg = load_config(
        paths={"data_dir": str(state), "backup_path": str(pg.base_dir / "repo")},
        backup={
            "pitr": {
                "pg_data": str(pg.data_dir),
                "pg_port": pg.port,
                "pg_socket_dir": str(pg.base_dir),
                "config_file": str(conf),
                "os_user": "postgres" if os.geteuid() == 0 else None,
            }
        },
    )
    pitr = Pitr.from_config(cfg)
    pitr.setup()
    started = time.monotonic()
    pitr.create("full")
    backup_s = time.monotonic() - started
    result = pitr.restore(target_dir=pg.base_dir / "restored")
    return backup_s, result.duration_s


def _checkpoint(pg: LocalPostgres) -> None:
    """Write every dirty buffer now, so the next timed step does not pay for the
    writes of the one before (the fill, the backup's test restore, a dropped copy)."""
    with pg.connect() as conn:
        conn.execute("CHECKPOINT")


def _restores(
    pg: LocalPostgres, backups: Backups, backup_id: str, raw_file: Path
) -> tuple[list[float], list[float]]:
    """RESTORE_ROUNDS timings each of our restore and of raw `pg_restore`, alternating
    which goes first, each after a checkpoint and with the previous copy dropped."""
    ours: list[float] = []
    raw: list[float] = []
    for round_ in range(RESTORE_ROUNDS):
        for step in ("ours", "raw") if round_ % 2 == 0 else ("raw", "ours"):
            _checkpoint(pg)
            if step == "ours":
                started = time.monotonic()
                restored = backups.restore(backup_id)
                ours.append(time.monotonic() - started)
                pg.drop_database(restored.target.rsplit("/", 1)[-1])
                continue
            pg.create_database("raw_restore")
            raw.append(
                _timed(
                    [
                        find_pg_tool("pg_restore"),
                        "--no-owner",
                        "--no-privileges",
                        "-d",
                        pg.url_for("raw_restore"),
                        str(raw_file),
                    ]
                )
            )
            pg.drop_database("raw_restore")
    return ours, raw


def run() -> dict[str, Any]:
    with (
        LocalPostgres.throwaway({"max_wal_size": "4GB"}) as pg,
        tempfile.TemporaryDirectory(prefix="ballast-bench-backup-") as tmp,
    ):
        url = pg.create_database("ballast_bench")
        db = DB(url)
        migrate(db=db)
        run_tx(seed_demo, db=db)
        print("building the database ...", flush=True)
        db_bytes = _fill(db)
        cfg = load_config(database={"url": url}, paths={"data_dir": tmp})
        backups = Backups.from_config(
            cfg, store=LocalObjectStore(Path(tmp) / "objects")
        )

        print("full backup ...", flush=True)
        full = backups.snapshot_db("full")
        raw_file = Path(tmp) / "raw.pgc"
        pg_url = pg.url_for("ballast_bench")
        raw_dump_s = _timed(
            [find_pg_tool("pg_dump"), "-Fc", "-f", str(raw_file), "-d", pg_url]
        )

        print("restores ...", flush=True)
        restore_runs, raw_restore_runs = _restores(pg, backups, full.id, raw_file)
        restore_s = statistics.median(restore_runs)
        raw_restore_s = statistics.median(raw_restore_runs)

        print("incrementals ...", flush=True)
        _audited_changes(db, 1_000, " *")
        incr_1k = backups.snapshot_db("incremental")
        _audited_changes(db, 100_000, " +")
        incr_100k = backups.snapshot_db("incremental")
        db.dispose()

        print("pgBackRest ...", flush=True)
        pitr_backup_s, pitr_restore_s = _pitr(pg)

    result = {
        "db_bytes": db_bytes,
        "backup_s": round(full.duration_s, 3),
        "verify_s": round(full.verify_s, 3),
        "raw_dump_s": round(raw_dump_s, 3),
        "restore_s": round(restore_s, 3),
        "raw_restore_s": round(raw_restore_s, 3),
        "backup_ratio": round(full.duration_s / raw_dump_s, 3),
        "restore_ratio": round(restore_s / raw_restore_s, 3),
        "restore_runs_s": [round(t, 3) for t in restore_runs],
        "raw_restore_runs_s": [round(t, 3) for t in raw_restore_runs],
        "incr_1k_s": round(incr_1k.duration_s, 3),
        "incr_100k_s": round(incr_100k.duration_s, 3),
        "incr_1k_verify_s": round(incr_1k.verify_s, 3),
        "incr_100k_verify_s": round(incr_100k.verify_s, 3),
        "full_bytes": full.size,
        "incr_100k_bytes": incr_100k.size,
        "pitr_backup_s": round(pitr_backup_s, 3),
        "pitr_restore_s": round(pitr_restore_s, 3),
    }
    write_result("backup", result)
    return result


if __name__ == "__main__":
    print(run())
