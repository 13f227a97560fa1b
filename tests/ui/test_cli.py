"""`ballast test e2e`: finds the suite from the package or the working directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ballast_ui import cli

ROOT = Path(__file__).resolve().parents[2]


def test_find_root_from_package_and_cwd(tmp_path: Path) -> None:
    assert cli.find_root(Path(cli.__file__).resolve().parent) == ROOT
    assert cli.find_root(tmp_path) is None
    assert cli.find_root(tmp_path, ROOT / "services") == ROOT


def test_e2e_without_the_suite_is_a_one_line_error(tmp_path: Path) -> None:
    # A process of its own: CliRunner takes over this process's stderr while the
    # command runs, and a log line of another test's thread landed in its output.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ballast_ui.cli import app; app()",
            "e2e",
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "error: the e2e tests are not here" in result.stderr + result.stdout
    assert len((result.stdout + result.stderr).strip().splitlines()) == 1


def test_e2e_runs_pytest_from_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    class Done:
        returncode = 0

    def fake_run(cmd: list[str], cwd: Path, **_: object) -> Done:
        seen.update(cmd=cmd, cwd=cwd)
        return Done()

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    result = CliRunner().invoke(cli.app, ["e2e", "--root", str(ROOT), "-x"])
    assert result.exit_code == 0, result.output
    assert seen["cwd"] == ROOT
    assert seen["cmd"][-5:] == ["pytest", "-m", "e2e", "tests/e2e", "-x"]  # type: ignore[index]
