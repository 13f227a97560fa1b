"""`ballast jobs schedule list | add | pause | resume | remove` in-process (CliRunner)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from ballast_common.cli import app as ballast
from ballast_jobs.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("cli_env")


def invoke(*args: str) -> Any:
    if args[0] == "db":
        return runner.invoke(ballast, list(args), catch_exceptions=False)
    result = runner.invoke(app, list(args[1:]), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def one_line_error(result: Any, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


def test_help() -> None:
    out = invoke("jobs", "schedule", "--help").stdout
    assert {"list", "add", "pause", "resume", "remove"} <= set(out.split())
    for cmd in ("list", "add", "remove"):
        assert invoke("jobs", "schedule", cmd, "--help").exit_code == 0


def test_add_list_pause_remove() -> None:
    assert invoke("db", "migrate").exit_code == 0
    assert invoke("jobs", "schedule", "list").stdout == "no schedules\n"
    added = invoke(
        "jobs", "schedule", "add", "nightly", "0 3 * * *",
        "--task", "demo.sleep", "--kwargs", '{"seconds": 0}', "--tz", "Europe/Berlin",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    assert "nightly" in added.stdout
    assert "active" in added.stdout
    listed = invoke("jobs", "schedule", "list").stdout.splitlines()
    assert len(listed) == 2
    assert "Europe/Berlin" in listed[1]
    assert "paused" in invoke("jobs", "schedule", "pause", "nightly").stdout
    assert "active" in invoke("jobs", "schedule", "resume", "nightly").stdout
    assert invoke("jobs", "schedule", "remove", "nightly").exit_code == 0
    assert "not found" in one_line_error(
        invoke("jobs", "schedule", "remove", "nightly"), 1
    )


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["x", "0 0 30 2 *"], 1, "never runs"),
        (["x", "* * *"], 1, "five fields"),
        (["x", "@daily", "--kwargs", "[1]"], 2, "JSON object"),
        (["x", "@daily", "--kwargs", "{"], 2, "not JSON"),
        (["x", "@daily", "--tz", "Nowhere/Land"], 1, "unknown time zone"),
        (["x\x01y", "@daily"], 1, "printable"),
        (["x", "@daily", "--owner", "nobody"], 2, "no user"),
        (["x", "@daily", "--kwargs", '{"seconds": -1}'], 1, "invalid parameters"),
    ],
)
def test_bad_add_is_one_line(args: list[str], code: int, says: str) -> None:
    assert invoke("db", "migrate").exit_code == 0
    task = ["--task", "demo.sleep"]
    line = one_line_error(invoke("jobs", "schedule", "add", *args, *task), code)
    assert says in line
