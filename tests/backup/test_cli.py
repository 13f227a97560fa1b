"""`ballast backup ...` on the embedded default (SQLite file + local object store)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ballast_backup.cli import app
from ballast_common.db.engine import DB
from ballast_common.db.migrate import migrate
from tests.backup.helpers import create_projects, seed

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DB]:
    url = f"sqlite:///{tmp_path / 'ballast.db'}"
    monkeypatch.setenv("BALLAST_DATABASE__URL", url)
    monkeypatch.setenv("BALLAST_PATHS__DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BALLAST_S3__ENDPOINT_URL", raising=False)
    db = DB(url)
    migrate(db=db)
    seed(db)
    yield db
    db.dispose()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _error(*args: str, code: int = 1) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_create_list_verify_restore_drill_prune(embedded: DB, tmp_path: Path) -> None:
    assert "no backups yet" in _ok("list")
    assert "take a full backup first" in _error("create", "--kind", "incremental")
    full_id = _ok("create", "--kind", "full").split()[0]
    create_projects(embedded, 3, "cli")
    out = _ok("create", "--kind", "incremental")
    incr_id = out.split()[0]
    assert "incremental good" in out
    listing = _ok("list")
    assert full_id in listing
    assert f"parent={full_id}" in listing
    assert "good" in _ok("verify", incr_id)
    restored = _ok("restore", incr_id)
    assert "verified" in restored
    assert list(tmp_path.glob("ballast.restore-*.db"))
    assert "drill ok" in _ok("drill")
    assert "would delete 0 backup(s)" in _ok("prune", "--dry-run")


def test_one_line_errors(embedded: DB) -> None:
    assert "backup nope not found" in _error("verify", "nope")
    assert "backup nope not found" in _error("restore", "nope")
    assert "is not a time" in _error("restore", "latest", "--until", "soon", code=2)
    assert "there is no good backup yet" in _error("restore", "latest")
    full_id = _ok("create").split()[0]
    assert "needs --force" in _error("restore", full_id, "--target", str(embedded.url))


def test_bad_config_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_BACKUP__KEEP_DAILY", "many")
    assert "backup.keep_daily" in _error("list", code=2)


def test_registered_in_the_ballast_cli() -> None:
    (ep,) = [e for e in entry_points(group="ballast.cli") if e.name == "backup"]
    assert ep.load() is app
    names = {c.name for c in app.registered_commands}
    assert names == {
        "create",
        "list",
        "verify",
        "restore",
        "drill",
        "prune",
        "exporter",
    }
    for command in sorted(names):
        assert "--help" in _ok(command, "--help") or "Usage" in _ok(command, "--help")
