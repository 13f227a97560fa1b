"""pg_dump/pg_restore are checked against the server before a backup or restore starts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ballast_backup.dbio import Target, check_pg_tool, server_major, tool_major
from ballast_backup.manifest import BackupError
from ballast_testing.servers import PostgresServer
from tests.backup.conftest import Env

pytestmark = pytest.mark.integration


def _fake_tool(bindir: Path, name: str, output: str) -> Path:
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_installed_tools_fit_the_server(postgres_server: PostgresServer) -> None:
    target = Target.parse(postgres_server.admin_url)
    major = server_major(target)
    assert major >= 12
    for name in ("pg_dump", "pg_restore"):
        path = check_pg_tool(name, target)
        assert tool_major(path) >= major


@pytest.mark.parametrize("name", ["pg_dump", "pg_restore"])
def test_a_tool_older_than_the_server_is_refused_before_it_runs(
    postgres_server: PostgresServer, tmp_path: Path, name: str
) -> None:
    target = Target.parse(postgres_server.admin_url)
    _fake_tool(tmp_path / "bin", name, f"{name} (PostgreSQL) 9.6.24")
    with pytest.raises(BackupError) as caught:
        check_pg_tool(name, target, tmp_path / "bin")
    message = str(caught.value)
    major = server_major(target)
    assert f"{name} 9 is older than the PostgreSQL {major} server" in message
    assert f"--build-arg PG_MAJOR={major}" in message
    assert "backup.pg_bindir" in message


@pytest.mark.parametrize(
    "output", ["", "garbage", "pg_dump (PostgreSQL) x.y", "\x00" * 10]
)
def test_a_tool_that_names_no_version_is_refused(tmp_path: Path, output: str) -> None:
    path = _fake_tool(tmp_path / "bin", "pg_dump", output)
    with pytest.raises(BackupError, match="names no PostgreSQL version"):
        tool_major(str(path))


def test_a_backup_with_an_old_pg_dump_fails_before_writing(
    pg_env: Env, tmp_path: Path
) -> None:
    bindir = tmp_path / "oldbin"
    _fake_tool(bindir, "pg_dump", "pg_dump (PostgreSQL) 9.6.24")
    config = pg_env.config.model_copy(
        update={"backup": pg_env.config.backup.model_copy(update={"pg_bindir": bindir})}
    )
    backups = type(pg_env.backups()).from_config(config, store=pg_env.store)
    with pytest.raises(BackupError, match="older than the PostgreSQL"):
        backups.snapshot_db("full")
    assert backups.catalog.ids() == []
    assert list(pg_env.store.list("")) == []
