"""PostgreSQL + a real S3-compatible server (radosgw): the flow, multipart uploads, and
the object store going away in the middle of an upload."""

from __future__ import annotations

import pytest

from ballast_backup.manifest import BackupError
from ballast_common.db.engine import DB
from ballast_common.errors import AppError
from ballast_common.storage import S3ObjectStore
from ballast_testing.s3 import S3Proxy, S3Server
from tests.backup.conftest import Env
from tests.backup.helpers import create_projects, seed, state, state_of, update_project

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024


def _filler(env: Env, rows: int) -> None:
    """A table of hard-to-compress text, so the dump spans several multipart parts."""
    with env.db.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE filler AS SELECT g AS id, md5(random()::text) || "
            f"md5(random()::text) AS junk FROM generate_series(1, {rows}) AS g"
        )


def test_flow_on_s3(pg_env: Env, s3_server: S3Server, s3_bucket: str) -> None:
    store = S3ObjectStore(s3_server.client(), s3_bucket, part_size=PART)
    backups = pg_env.backups(store)
    seed(pg_env.db)
    ids = create_projects(pg_env.db, 5, "s3")
    _filler(pg_env, 280_000)
    full = backups.snapshot_db("full")
    assert full.objects[0].size > PART + PART // 2  # multipart
    update_project(pg_env.db, ids[0], name="after full")
    create_projects(pg_env.db, 2, "more")
    expected = state(pg_env.db)
    incr = backups.snapshot_db("incremental")
    assert incr.status == "good"
    pg_env.drop()
    result = backups.restore(incr.id, target=str(pg_env.db.url), force=True)
    assert result.chain == [full.id, incr.id]
    assert state_of(str(pg_env.db.url)) == expected
    restored = DB(str(pg_env.db.url))
    try:
        with restored.engine.connect() as conn:
            count = conn.exec_driver_sql("SELECT count(*) FROM filler").scalar()
    finally:
        restored.dispose()
    assert count == 280_000
    # The restore drill reads the same chain back from S3.
    assert backups.drill()["success"] is True


def test_s3_unreachable_mid_upload(
    pg_env: Env, s3_server: S3Server, s3_bucket: str, s3_proxy: S3Proxy
) -> None:
    direct = S3ObjectStore(s3_server.client(), s3_bucket, part_size=PART)
    flaky = S3ObjectStore(
        s3_server.client(endpoint_url=s3_proxy.endpoint_url), s3_bucket, part_size=PART
    )
    seed(pg_env.db)
    _filler(pg_env, 280_000)
    earlier = pg_env.backups(direct).snapshot_db("full")

    s3_proxy.cut_after(PART + PART // 2)  # inside the second part
    with pytest.raises(AppError):
        pg_env.backups(flaky).snapshot_db("full")
    assert s3_proxy.is_cut

    backups = pg_env.backups(direct)
    assert [m.id for m in backups.catalog.all()] == [earlier.id]
    assert backups.verify(earlier.id).status == "good"

    # Unreachable from the start: a clear error, still nothing new listed.
    with pytest.raises(AppError, match=r"unreachable|unavailable"):
        pg_env.backups(flaky).snapshot_db("incremental")
    assert [m.id for m in backups.catalog.all()] == [earlier.id]

    s3_proxy.restore()
    incr = pg_env.backups(flaky).snapshot_db("incremental")
    assert incr.status == "good"
    assert incr.parent_id == earlier.id


def test_missing_object_on_s3(pg_env: Env, s3_server: S3Server, s3_bucket: str) -> None:
    store = S3ObjectStore(s3_server.client(), s3_bucket, part_size=PART)
    backups = pg_env.backups(store)
    seed(pg_env.db)
    full = backups.snapshot_db("full")
    store.delete(full.objects[0].key)
    with pytest.raises(BackupError, match="is missing"):
        backups.verify(full.id)
    assert backups.catalog.load(full.id).status == "bad"
