"""The metrics exporter and the retention policy, from manifests in the store."""

from __future__ import annotations

import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ballast_backup.core import Backups
from ballast_backup.exporter import serve
from ballast_backup.manifest import Catalog, Manifest, ObjectEntry
from ballast_common.config import load_config
from ballast_common.storage import LocalObjectStore, put_bytes
from tests.backup.conftest import Env
from tests.backup.helpers import seed

pytestmark = pytest.mark.integration


def _scrape(catalog: Catalog) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    server = serve(catalog, "127.0.0.1", 0, cache_s=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_follow_backups_and_drills(sqlite_env: Env) -> None:
    backups = sqlite_env.backups()
    empty = _scrape(backups.catalog)
    assert empty[("ballast_backup_good_total", (("kind", "full"),))] == 0
    assert not any(name == "ballast_backup_rpo_seconds" for name, _ in empty)

    seed(sqlite_env.db)
    full = backups.snapshot_db("full")
    incr = backups.snapshot_db("incremental")
    backups.drill()
    m = _scrape(backups.catalog)
    full_l, incr_l = (("kind", "full"),), (("kind", "incremental"),)
    assert m[("ballast_backup_good_total", full_l)] == 1
    assert m[("ballast_backup_good_total", incr_l)] == 1
    assert m[
        ("ballast_backup_last_success_timestamp_seconds", full_l)
    ] == pytest.approx(full.created.timestamp())
    assert m[("ballast_backup_last_size_bytes", incr_l)] == incr.size
    assert m[("ballast_backup_last_duration_seconds", full_l)] == full.duration_s
    assert 0 <= m[("ballast_backup_rpo_seconds", ())] < 60
    assert m[("ballast_backup_drill_last_success", ())] == 1
    assert m[("ballast_backup_drill_last_duration_seconds", ())] > 0
    assert (
        m[("ballast_backup_drill_last_timestamp_seconds", ())]
        >= full.created.timestamp() - 1
    )


def _fake(
    catalog: Catalog,
    when: datetime,
    kind: str,
    parent: str | None,
    status: str = "good",
) -> str:
    backup_id = f"{when.strftime('%Y%m%dT%H%M%SZ')}-{kind}-0000"
    key = catalog.key(backup_id, "data")
    info = put_bytes(catalog.store, key, b"x")
    catalog.save(
        Manifest(
            id=backup_id,
            kind=kind,  # type: ignore[arg-type]
            parent_id=parent,
            created_at=when.isoformat(),
            schema_revision="r",
            source={"backend": "sqlite"},
            objects=[ObjectEntry(key, info.size, info.sha256)],
            status=status,  # type: ignore[arg-type]
        )
    )
    return backup_id


def test_prune_keeps_hourly_daily_weekly_and_dependencies(tmp_path: Path) -> None:
    cfg = load_config(
        database={"url": f"sqlite:///{tmp_path / 'x.db'}"},
        backup={"keep_hourly": 3, "keep_daily": 2, "keep_weekly": 2},
    )
    backups = Backups.from_config(cfg, store=LocalObjectStore(tmp_path / "o"))
    cat = backups.catalog
    now = datetime(2026, 11, 22, 12, 30, tzinfo=UTC)
    old_full = _fake(cat, now - timedelta(days=20), "full", None)
    week_full = _fake(cat, now - timedelta(days=8), "full", None)
    daily_full = _fake(cat, now - timedelta(days=1, hours=2), "full", None)
    full = _fake(cat, now - timedelta(hours=6), "full", None)
    chain = [full]
    for h in (5, 4, 3, 2, 1):
        chain.append(
            _fake(cat, now - timedelta(hours=h, minutes=10), "incremental", chain[-1])
        )
    bad = _fake(cat, now - timedelta(days=2), "incremental", daily_full, status="bad")

    doomed = backups.prune(now, dry_run=True)
    assert set(doomed) == {old_full, bad}
    # The newest incremental depends on every earlier one: the whole chain stays.
    assert not set(chain) & set(doomed)
    assert week_full not in doomed
    assert daily_full not in doomed
    assert backups.prune(now) == doomed
    assert set(cat.ids()) == {week_full, daily_full, *chain}
