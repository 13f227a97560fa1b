"""PostgreSQL + a real S3-compatible server (radosgw): the flow, multipart uploads, and
the object store going away in the middle of an upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from ballast_backup.core import Backups
from ballast_backup.manifest import BackupError
from ballast_common.config import S3Config
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


def test_backups_with_the_pods_identity_need_no_static_keys(
    pg_env: Env,
    s3_server: S3Server,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # With IRSA / EKS Pod Identity the chart passes no S3 key at all: the backup code must
    # build its client from boto3's default credential chain. Its environment provider
    # stands in here for the web-identity provider (which needs a real STS).
    config = pg_env.config.model_copy(
        update={
            "s3": S3Config(
                endpoint_url=s3_server.endpoint_url,
                bucket=s3_bucket,
                region=s3_server.region,
                access_key_id="",  # what an empty BALLAST_S3__ACCESS_KEY_ID gives
            )
        }
    )
    assert not config.s3.access_key_id
    assert config.s3.secret_access_key is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    seed(pg_env.db)
    backups = Backups.from_config(config)  # the store from the config, as the CLI does
    assert isinstance(backups.store, S3ObjectStore)
    full = backups.snapshot_db("full")
    assert full.status == "good"
    assert [m.id for m in backups.catalog.all()] == [full.id]
