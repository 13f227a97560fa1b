"""The installed `ballast` console script, run as a real process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ballast_common.db import head_revision
from tests.cli.conftest import BALLAST, RunBallast, assert_one_line_error

VERSION = (Path(__file__).parents[2] / "VERSION").read_text().strip()

PROD = {
    "BALLAST_ENV": "prod",
    "BALLAST_SECURITY__SECRET_KEY": "a-proper-production-secret-key",
    "BALLAST_DATABASE__URL": "postgresql://app@127.0.0.1:1/ballast",
}


def test_console_script_is_installed() -> None:
    assert BALLAST.is_file()


def test_version(run_ballast: RunBallast) -> None:
    proc = run_ballast("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"ballast {VERSION}\n"
    assert proc.stderr == ""


def test_help_everywhere(run_ballast: RunBallast) -> None:
    commands = [
        [],
        ["app"],
        ["app", "run"],
        ["db"],
        ["db", "migrate"],
        ["db", "current"],
        ["db", "seed"],
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(lambda args: run_ballast(*args, "--help"), commands))
    for args, proc in zip(commands, procs, strict=True):
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Usage:" in proc.stdout, args
        assert proc.stderr == "", args


def test_migrate_current_seed_in_order(run_ballast: RunBallast, tmp_path: Path) -> None:
    head = head_revision()

    # Seeding an empty database is refused.
    line = assert_one_line_error(run_ballast("db", "seed"), 1)
    assert "not migrated" in line

    proc = run_ballast("db", "migrate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"database at {head} (was empty; head is {head})\n"
    assert proc.stderr == ""
    assert (tmp_path / "x.db").is_file()

    proc = run_ballast("db", "migrate")
    assert proc.returncode == 0
    assert proc.stdout == f"database at {head} (was {head}; head is {head})\n"

    proc = run_ballast("db", "current")
    assert proc.returncode == 0
    assert proc.stdout == f"{head} — up to date\n"

    proc = run_ballast("db", "seed")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[1:] == [
        ["admin", "admin-demo-pass", "admin"],
        ["editor", "editor-demo-pass", "editor"],
        ["viewer", "viewer-demo-pass", "viewer"],
    ]
    proc = run_ballast("db", "seed")
    assert proc.returncode == 0
    assert [line.split()[0] for line in proc.stdout.splitlines()[1:]] == [
        "admin",
        "editor",
        "viewer",
    ]
    assert all(
        line.endswith("(already existed)") for line in proc.stdout.splitlines()[1:]
    )
    # Nothing was written under the working directory's ./var.
    assert not (tmp_path / "var").exists()


def test_seed_in_prod_without_random_passwords(run_ballast: RunBallast) -> None:
    line = assert_one_line_error(run_ballast("db", "seed", env=PROD), 2)
    assert "--random-passwords" in line


def test_bad_configuration(run_ballast: RunBallast) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        procs = list(
            pool.map(
                lambda args: run_ballast(*args, env={"BALLAST_ENV": "nope"}),
                [["db", "migrate"], ["db", "seed"], ["app", "run"]],
            )
        )
    for proc in procs:
        line = assert_one_line_error(proc, 2)
        assert line.startswith("error: invalid configuration: env: "), line


def test_prod_with_the_default_secret(run_ballast: RunBallast) -> None:
    env = {**PROD, "BALLAST_SECURITY__SECRET_KEY": "changeme"}
    line = assert_one_line_error(run_ballast("db", "current", env=env), 2)
    assert "refusing to start in prod" in line
    assert "changeme" not in line


def test_bad_database_url_scheme(run_ballast: RunBallast) -> None:
    env = {"BALLAST_DATABASE__URL": "mysql://db/ballast"}
    line = assert_one_line_error(run_ballast("db", "migrate", env=env), 2)
    assert "unsupported database 'mysql'" in line


def test_unreachable_database(run_ballast: RunBallast) -> None:
    line = assert_one_line_error(run_ballast("db", "current", env=PROD), 1)
    assert "OperationalError" in line


def test_secret_in_config_file(run_ballast: RunBallast, tmp_path: Path) -> None:
    path = tmp_path / "ballast.toml"
    path.write_text('[security]\nsecret_key = "in-the-file"\n')
    proc = run_ballast("db", "current", env={"BALLAST_CONFIG_FILE": str(path)})
    line = assert_one_line_error(proc, 2)
    assert "BALLAST_SECURITY__SECRET_KEY" in line
    assert "in-the-file" not in line


def test_no_arguments_shows_help(run_ballast: RunBallast) -> None:
    proc = run_ballast()
    assert "Usage:" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
