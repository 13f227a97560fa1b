"""Point-in-time recovery with pgBackRest: a real PostgreSQL cluster archiving its WAL
through `archive_command` to the project's S3 test server (radosgw over HTTPS).

Recovery covers what the logical backups cannot: a schema change and a write that
bypassed the audit log come back exactly as they were at the chosen moment, and the
writes after it do not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from ballast_backup.cli import app
from ballast_backup.core import Backups
from ballast_backup.exporter import backup_metrics
from ballast_backup.manifest import BackupError
from ballast_backup.pitr import Pitr
from ballast_common.config import AppConfig, load_config
from ballast_testing.s3 import S3Server
from ballast_testing.servers import LOOPBACK, LocalPostgres, free_port

pytestmark = pytest.mark.integration

OS_USER = "postgres" if os.geteuid() == 0 else None


@dataclass
class Cluster:
    server: LocalPostgres
    pitr: Pitr
    config: AppConfig
    env: dict[str, str]

    def sql(self, statement: str, dbname: str = "app") -> list[tuple[object, ...]]:
        with psycopg.connect(self.server.url_for(dbname), autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def now(self) -> datetime:
        value = self.sql("select clock_timestamp()")[0][0]
        assert isinstance(value, datetime)
        return value


def _tls_endpoint(s3: S3Server) -> str:
    if s3.tls_endpoint_url is None:
        pytest.fail(
            "the S3 test server offers no https endpoint (BALLAST_TEST_S3_TLS_URL)"
        )
    # pgBackRest matches the certificate by host name, never by IP address.
    return s3.tls_endpoint_url.replace("127.0.0.1", "localhost")


@pytest.fixture
def cluster(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    if shutil.which("pgbackrest") is None:
        pytest.fail(
            "pgbackrest is not installed: `make install` (as root) installs it",
            pytrace=False,
        )
    server = LocalPostgres.initialised()
    conf = server.base_dir / "pgbackrest" / "pgbackrest.conf"
    server.settings.update(
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"'pgbackrest --config={conf} --stanza=ballast archive-push %p'",
        }
    )
    try:
        server._start_on_free_port()
        env = {
            "BALLAST_S3__ENDPOINT_URL": s3_server.endpoint_url,
            "BALLAST_S3__BUCKET": s3_bucket,
            "BALLAST_S3__ACCESS_KEY_ID": s3_server.access_key,
            "BALLAST_S3__SECRET_ACCESS_KEY": s3_server.secret_key,
            "BALLAST_BACKUP__PITR__PG_DATA": str(server.data_dir),
            "BALLAST_BACKUP__PITR__PG_PORT": str(server.port),
            "BALLAST_BACKUP__PITR__PG_SOCKET_DIR": str(server.base_dir),
            "BALLAST_BACKUP__PITR__CONFIG_FILE": str(conf),
            "BALLAST_BACKUP__PITR__S3_ENDPOINT": _tls_endpoint(s3_server),
            "BALLAST_BACKUP__PITR__CA_FILE": str(s3_server.ca_file or ""),
            "BALLAST_BACKUP__PITR__RECOVERY_TIMEOUT_S": "120",
            "BALLAST_PATHS__DATA_DIR": str(server.base_dir / "state"),
        }
        if OS_USER:
            env["BALLAST_BACKUP__PITR__OS_USER"] = OS_USER
        if not s3_server.ca_file:
            env["BALLAST_BACKUP__PITR__VERIFY_TLS"] = "false"
            del env["BALLAST_BACKUP__PITR__CA_FILE"]
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        cfg = load_config()
        pitr = Pitr.from_config(cfg)
        pitr.setup()
        server.create_database("app")
        yield Cluster(server, pitr, cfg, env)
    finally:
        server.destroy()
        for leftover in server.base_dir.parent.glob(f"{server.base_dir.name}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _tables(cluster: Cluster) -> list[str]:
    rows = cluster.sql(
        "select table_name from information_schema.tables "
        "where table_schema = 'public' order by 1"
    )
    return [str(r[0]) for r in rows]


def test_point_in_time_restore_brings_back_schema_and_unaudited_writes(
    cluster: Cluster,
) -> None:
    cluster.sql("create table projects (id int primary key, name text)")
    cluster.sql("insert into projects values (1, 'before full')")
    full = cluster.pitr.create("full")
    assert full.kind == "full"
    assert full.size > 0

    # After the full: a schema change and a write that no audit log saw.
    cluster.sql("alter table projects add column budget numeric")
    cluster.sql("insert into projects values (2, 'unaudited', 1e30)")
    cluster.sql("create table notes (body text)")
    cluster.sql("insert into notes values (E'tab\\there, nul-free, ünïcode')")
    diff = cluster.pitr.create("diff")
    assert diff.kind == "diff"
    assert diff.prior == full.label
    cluster.sql("insert into projects values (3, 'after diff', -1)")
    target = cluster.now()

    # The disaster after the chosen moment.
    time.sleep(0.05)
    cluster.sql("drop table notes")
    cluster.sql("update projects set name = 'clobbered'")
    cluster.pitr.check()  # the WAL holding the disaster is archived

    result = cluster.pitr.restore(target)
    assert result.data_dir != cluster.server.data_dir
    assert result.databases["app"] == 2
    assert not result.swapped

    # The live server is untouched until the swap; --swap refuses while it runs.
    assert _tables(cluster) == ["projects"]
    with pytest.raises(BackupError, match="running"):
        cluster.pitr._swap(result.data_dir, "x")
    assert result.data_dir.is_dir()

    cluster.server.stop()
    previous = cluster.pitr._swap(result.data_dir, "t1")
    assert previous.is_dir()
    assert (previous / "PG_VERSION").is_file()
    cluster.server.start()
    assert _tables(cluster) == ["notes", "projects"]
    assert cluster.sql("select id, name, budget from projects order by id") == [
        (1, "before full", None),
        (2, "unaudited", 10**30),
        (3, "after diff", -1),
    ]
    assert cluster.sql("select body from notes") == [("tab\there, nul-free, ünïcode",)]
    # The swapped-in server archives again: a new full backup and a check succeed.
    cluster.pitr.check()
    assert cluster.pitr.create("full").kind == "full"


def test_restore_refuses_impossible_targets_and_keeps_nothing(
    cluster: Cluster,
) -> None:
    with pytest.raises(BackupError, match="no pgBackRest backup"):
        cluster.pitr.restore(datetime.now(UTC) - timedelta(seconds=1))
    cluster.sql("create table t (x int)")
    full = cluster.pitr.create("full")
    siblings = set(cluster.server.base_dir.iterdir())
    with pytest.raises(BackupError, match="before the oldest backup"):
        cluster.pitr.restore(full.started - timedelta(hours=1))
    with pytest.raises(BackupError, match="in the future"):
        cluster.pitr.restore(datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(BackupError, match="live data directory"):
        cluster.pitr.restore(target_dir=cluster.server.data_dir)
    taken = cluster.server.base_dir / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(BackupError, match="not empty"):
        cluster.pitr.restore(target_dir=taken)
    assert (taken / "keep.txt").read_text() == "mine"
    assert set(cluster.server.base_dir.iterdir()) == siblings | {taken}


def test_a_failed_recovery_leaves_no_half_restored_directory(cluster: Cluster) -> None:
    cluster.sql("create table t (x int)")
    cluster.pitr.create("full")
    # A target after the last archived WAL: recovery ends before reaching it.
    # (Nothing is archived after this moment: no check, no switch.) Two seconds on:
    # pgBackRest keeps a backup's stop time in whole seconds, and a target inside the
    # backup's last second found no backup set to start from ("unable to find backup
    # set with stop time less than ..."), seen once in CI.
    late = cluster.now() + timedelta(seconds=2)
    while datetime.now(UTC) <= late:
        time.sleep(0.01)
    dest = cluster.server.base_dir / "half"
    with pytest.raises(BackupError, match=r"did not (start|finish)"):
        cluster.pitr.restore(late, target_dir=dest)
    assert not dest.exists()
    assert _tables(cluster) == ["t"]  # the live server never noticed


def test_verify_finds_a_flipped_byte(
    cluster: Cluster, s3_server: S3Server, s3_bucket: str
) -> None:
    cluster.sql("create table t as select g from generate_series(1, 1000) g")
    cluster.pitr.create("full")
    client = s3_server.client()
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_bucket, Prefix="pgbackrest/backup/"
        )
        for item in page.get("Contents", [])
        if "/bundle/" in item["Key"] or item["Key"].endswith(".lz4")
    ]
    assert keys, "no backup data files in the bucket"
    key = max(
        keys,
        key=lambda k: client.head_object(Bucket=s3_bucket, Key=k)["ContentLength"],
    )
    body = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(body))
    with pytest.raises(BackupError, match="verify failed"):
        cluster.pitr.verify()


def test_cli_drives_setup_create_list_drill(cluster: Cluster) -> None:
    runner = CliRunner()
    cluster.sql("create table t (x int)")
    out = runner.invoke(app, ["pitr", "setup"])
    assert out.exit_code == 0, out.output
    assert "archive-push %p" in out.output
    out = runner.invoke(app, ["pitr", "create", "--kind", "full"])
    assert out.exit_code == 0, out.output
    assert " full: " in out.output
    out = runner.invoke(app, ["pitr", "create", "--kind", "diff"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["pitr", "list"])
    assert out.exit_code == 0
    assert "restorable from" in out.output
    out = runner.invoke(app, ["pitr", "verify"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["pitr", "drill"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("drill ok:")
    # The exporter reads the drill's record from the object store.
    catalog = Backups.from_config(load_config()).catalog
    record = catalog.last_drill("pitr")
    assert record is not None
    assert record["success"] is True
    assert record["databases"]["app"] == 1
    metrics = {m.name: m.samples for m in backup_metrics(catalog)}
    assert metrics["ballast_backup_pitr_drill_last_success"][0].value == 1
    assert catalog.last_drill() is None  # the logical drill's record is its own
    out = runner.invoke(app, ["pitr", "restore", "--until", "not a time"])
    assert out.exit_code == 2
    assert out.output.startswith("error: --until")
    out = runner.invoke(app, ["pitr", "create", "--kind", "incremental"])
    assert out.exit_code == 2


def test_configuration_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("BALLAST_PATHS__DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BALLAST_BACKUP__PITR__PG_DATA", raising=False)
    out = runner.invoke(app, ["pitr", "create"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        "error: backup.pitr.pg_data is not set: name the PostgreSQL data directory "
        "(BALLAST_BACKUP__PITR__PG_DATA)"
    ]
    monkeypatch.setenv("BALLAST_BACKUP__PITR__PG_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("BALLAST_S3__ENDPOINT_URL", "http://127.0.0.1:9")
    out = runner.invoke(app, ["pitr", "setup"])
    assert out.exit_code == 1
    assert "needs an https S3 endpoint" in out.output
    monkeypatch.delenv("BALLAST_S3__ENDPOINT_URL")
    out = runner.invoke(app, ["pitr", "list"])
    assert out.exit_code == 1
    assert out.output.startswith("error: stanza ballast:")
    for command in ("setup", "create", "list", "verify", "restore", "drill"):
        out = runner.invoke(app, ["pitr", command, "--help"])
        assert out.exit_code == 0
        assert "Usage" in out.output


def test_s3_repository_with_the_pods_identity(tmp_path: Path) -> None:
    # No static keys (IRSA): pgBackRest gets keys from STS for the pod's web identity.
    base = {
        "paths": {"data_dir": str(tmp_path), "backup_path": str(tmp_path / "b")},
        "backup": {"pitr": {"pg_data": str(tmp_path / "data")}},
    }
    s3 = {"endpoint_url": "https://s3.eu-central-1.amazonaws.com", "bucket": "bk"}
    text = Pitr.from_config(load_config(**base, s3=s3)).config_text()
    assert "repo1-type=s3" in text
    assert "repo1-s3-key-type=web-id" in text
    assert "repo1-s3-key=" not in text
    assert "repo1-s3-key-secret" not in text
    keyed = {**s3, "access_key_id": "AKIAEXAMPLE", "secret_access_key": "k3y-s3cret"}
    text = Pitr.from_config(load_config(**base, s3=keyed)).config_text()
    assert "repo1-s3-key=AKIAEXAMPLE" in text
    assert "repo1-s3-key-type" not in text
    with pytest.raises(BackupError, match="go together"):
        Pitr.from_config(load_config(**base, s3={**s3, "access_key_id": "AKIAEXAMPLE"}))


def test_posix_repository_without_s3(tmp_path: Path) -> None:
    cfg = load_config(
        paths={"data_dir": str(tmp_path), "backup_path": str(tmp_path / "b")},
        backup={"pitr": {"pg_data": str(tmp_path / "data"), "cipher_pass": "s3cret"}},
    )
    pitr = Pitr.from_config(cfg)
    text = pitr.config_text()
    assert "repo1-type=posix" in text
    assert f"repo1-path={tmp_path / 'b' / 'pgbackrest'}" in text
    assert "repo1-cipher-type=aes-256-cbc" in text
    path = pitr.write_config()
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "b" / "pgbackrest").is_dir()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates(base: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and a client certificate."""
    d = base / "tls"
    d.mkdir()
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ballast-test-ca",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
    )  # fmt: skip
    for name, cn, ext in (
        ("server", "localhost", "subjectAltName=DNS:localhost"),
        ("client", "ballast-backup", "extendedKeyUsage=clientAuth"),
    ):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
        )  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"),
        )  # fmt: skip
    for item in d.iterdir():
        item.chmod(0o644 if item.suffix == ".crt" else 0o600)
        if OS_USER:
            shutil.chown(item, OS_USER)
    return {p.name: p for p in d.iterdir()}


def test_backups_from_another_host_through_the_tls_server(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kubernetes layout: the CronJob's pgBackRest reaches the database host's
    `pgbackrest server` over mutual TLS; a restore from there verifies a local copy."""
    base = cluster.server.base_dir
    tls = _certificates(base)
    port = free_port()
    server_conf = base / "pgbackrest" / "server.conf"
    server_conf.write_text(
        cluster.pitr.config_text().replace(
            "[global]\n",
            "[global]\n"
            f"tls-server-address={LOOPBACK}\ntls-server-port={port}\n"
            f"tls-server-cert-file={tls['server.crt']}\n"
            f"tls-server-key-file={tls['server.key']}\n"
            f"tls-server-ca-file={tls['ca.crt']}\n"
            "tls-server-auth=ballast-backup=ballast\n",
            1,
        )
    )
    if OS_USER:
        shutil.chown(server_conf, OS_USER)
    as_user = ["runuser", "-u", OS_USER, "--"] if OS_USER else []
    tls_server = subprocess.Popen(
        [*as_user, "pgbackrest", f"--config={server_conf}", "server"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        remote_dir = base / "remote"
        for key, value in {
            "BALLAST_BACKUP__PITR__PG_HOST": "localhost",
            "BALLAST_BACKUP__PITR__PG_HOST_PORT": str(port),
            "BALLAST_BACKUP__PITR__PG_HOST_CERT_FILE": str(tls["client.crt"]),
            "BALLAST_BACKUP__PITR__PG_HOST_KEY_FILE": str(tls["client.key"]),
            "BALLAST_BACKUP__PITR__PG_HOST_CA_FILE": str(tls["ca.crt"]),
            "BALLAST_BACKUP__PITR__CONFIG_FILE": str(remote_dir / "pgbackrest.conf"),
        }.items():
            monkeypatch.setenv(key, value)
        remote = Pitr.from_config(load_config())
        cluster.sql("create table far (x int)")
        cluster.sql("insert into far values (42)")
        # The TLS server may still be starting: the first call is allowed to wait.
        deadline = time.monotonic() + 30
        while True:
            try:
                backup = remote.create("full")
                break
            except BackupError:
                if time.monotonic() > deadline or tls_server.poll() is not None:
                    raise
                time.sleep(0.5)
        assert backup.kind == "full"
        assert "pg1-host-type=tls" in remote.config_file.read_text()
        with pytest.raises(BackupError, match="on that host"):
            remote.restore(swap=True)
        result = remote.restore(target_dir=remote_dir / "copy")
        assert result.databases["app"] == 1
        assert not result.swapped
    finally:
        tls_server.terminate()
        tls_server.wait(timeout=10)
