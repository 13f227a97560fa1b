"""Fixtures for the `ballast` CLI: a clean environment, a tmp SQLite URL, the console script."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import structlog

from ballast_common.db import reset_db

BALLAST = Path(sys.executable).with_name("ballast")


def clean_environ() -> dict[str, str]:
    """This process's environment without any BALLAST_* setting of the shell."""
    return {
        k: v
        for k, v in os.environ.items()  # noqa: TID251 - building a child's environment
        if not k.startswith("BALLAST_")
    }


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/x.db"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[str]:
    """In-process CLI runs: only BALLAST_DATABASE__URL set; logging and the default
    database that the commands set up are undone afterwards."""
    for name in list(os.environ):  # noqa: TID251 - isolating the test from the shell
        if name.startswith("BALLAST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BALLAST_DATABASE__URL", db_url)
    root = logging.getLogger()
    level = root.level
    yield db_url
    for handler in list(root.handlers):
        if handler.get_name() == "ballast":
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    reset_db()


RunBallast = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_ballast(tmp_path: Path, db_url: str) -> RunBallast:
    """Run the installed console script: `run_ballast("db", "migrate", env={...})`."""
    assert BALLAST.exists(), f"console script not installed at {BALLAST}"

    def run(
        *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**clean_environ(), "BALLAST_DATABASE__URL": db_url, **(env or {})}
        return subprocess.run(
            [str(BALLAST), *args],
            env=full_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def assert_one_line_error(
    proc: subprocess.CompletedProcess[str], code: int, starts: str = "error: "
) -> str:
    """Exit `code`, exactly one line on stderr starting with `starts`, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(starts), lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


# -- processes (no psutil here: /proc) -------------------------------------------------


def process_state(pid: int) -> str | None:
    """The /proc state letter of `pid` (None when gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def pids_with_environ(marker: str) -> list[int]:
    """Live processes of ours whose environment contains `marker` (e.g. a tmp path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def kill_leftovers(pids: list[int]) -> None:
    """Last-resort cleanup of processes this test started (by pid)."""
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
