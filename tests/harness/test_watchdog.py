"""The suite's watchdog turns a hang that pytest-timeout cannot break into a quick exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A test that swallows pytest-timeout's failure and goes on waiting, as a cleanup that
# waits on the hung thing does.
HANGING = """
import time
import pytest

pytestmark = pytest.mark.serial  # a hang ends the run within its grace

@pytest.mark.timeout(1)
def test_hangs_through_its_timeout():
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            time.sleep(0.2)
        except BaseException:
            pass
"""


@pytest.mark.timeout(120)
def test_a_hang_past_its_timeout_ends_the_run_with_every_stack(tmp_path: Path) -> None:
    (tmp_path / "test_hang.py").write_text(HANGING)
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["tests.fixtures.watchdog"]\n'
    )
    env = {
        **os.environ,  # noqa: TID251 - the child pytest needs this environment
        "BALLAST_TEST_WATCHDOG_GRACE_S": "2",
        "PYTHONPATH": str(ROOT),
    }
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-cov",
            str(tmp_path),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    took = time.monotonic() - started
    assert run.returncode != 0
    assert took < 60, run.stdout + run.stderr
    assert "test_hangs_through_its_timeout" in run.stderr
    assert "Timeout (0:00:03)!" in run.stderr
    assert "Thread" in run.stderr
