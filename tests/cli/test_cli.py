"""The `ballast` CLI in-process (typer's CliRunner): output, exit codes, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from ballast_common import cli
from ballast_common.cli import app, main, product_version
from ballast_common.db import DB, current_revision, head_revision
from ballast_common.errors import AppError, ConfigError
from ballast_common.models import Project, User
from ballast_common.supervisor import Component

VERSION = (Path(__file__).parents[2] / "VERSION").read_text().strip()

runner = CliRunner()

# Every test gets a clean BALLAST_* environment with a tmp SQLite URL.
pytestmark = pytest.mark.usefixtures("cli_env")


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def one_line_error(result: Any, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


# -- help and version -------------------------------------------------------------------


def test_version_is_the_version_file() -> None:
    assert product_version() == VERSION
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"ballast {VERSION}\n"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["app"],
        ["db"],
        ["app", "run"],
        ["db", "migrate"],
        ["db", "current"],
        ["db", "seed"],
    ],
    ids=lambda a: " ".join(a) or "root",
)
def test_help_everywhere(args: list[str]) -> None:
    result = invoke(*args, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


def test_help_lists_the_groups_and_commands() -> None:
    assert {"app", "db"} <= set(invoke("--help").stdout.split())
    db_help = invoke("db", "--help").stdout
    for command in ("migrate", "current", "seed"):
        assert command in db_help
    run_help = invoke("app", "run", "--help").stdout
    for option in ("--api-port", "--ui-port", "--host", "--no-migrate"):
        assert option in run_help


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["nope"])
    assert result.exit_code == 2


# -- db ---------------------------------------------------------------------------------


def test_migrate_current_and_seed(cli_env: str) -> None:
    url = cli_env
    result = invoke("db", "current")
    assert result.exit_code == 0
    assert result.stdout.startswith("empty — behind")

    result = invoke("db", "migrate")
    assert result.exit_code == 0, result.stderr
    head = head_revision()
    assert result.stdout == f"database at {head} (was empty; head is {head})\n"
    assert result.stderr == "", "logs stay out of the way (WARNING by default)"

    result = invoke("db", "migrate")
    assert result.stdout == f"database at {head} (was {head}; head is {head})\n"

    assert invoke("db", "current").stdout == f"{head} — up to date\n"

    result = invoke("db", "seed")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "demo users (username / password / role):"
    assert [line.split() for line in lines[1:]] == [
        ["admin", "admin-demo-pass", "admin"],
        ["editor", "editor-demo-pass", "editor"],
        ["viewer", "viewer-demo-pass", "viewer"],
    ]
    result = invoke("db", "seed")
    assert result.exit_code == 0
    assert all(
        line.endswith("(already existed)") for line in result.stdout.splitlines()[1:]
    )

    db = DB(url)
    try:
        with db.session() as session:
            assert (
                session.execute(select(func.count()).select_from(User)).scalar_one()
                == 3
            )
            assert (
                session.execute(select(func.count()).select_from(Project)).scalar_one()
                == 4
            )
    finally:
        db.dispose()


def test_log_level_from_the_environment_goes_to_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_LOG_LEVEL", "INFO")
    result = invoke("db", "migrate")
    assert result.exit_code == 0
    assert result.stdout.startswith("database at ")
    assert '"service": "cli"' in result.stderr


def test_seed_before_migrate_fails() -> None:
    line = one_line_error(invoke("db", "seed"), 1)
    assert "not migrated" in line
    assert "ballast db migrate" in line


def test_seed_random_passwords() -> None:
    invoke("db", "migrate")
    result = invoke("db", "seed", "--random-passwords")
    assert result.exit_code == 0
    passwords = [line.split()[1] for line in result.stdout.splitlines()[1:]]
    assert len(set(passwords)) == 3
    assert not any(p.endswith("-demo-pass") for p in passwords)
    again = invoke("db", "seed", "--random-passwords")
    assert [line.split()[1] for line in again.stdout.splitlines()[1:]] == [
        "(unchanged)"
    ] * 3


def prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_ENV", "prod")
    monkeypatch.setenv("BALLAST_SECURITY__SECRET_KEY", "a-proper-production-secret-key")
    monkeypatch.setenv("BALLAST_DATABASE__URL", "postgresql://app@127.0.0.1:1/ballast")


def test_seed_in_prod_needs_random_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    prod(monkeypatch)
    line = one_line_error(invoke("db", "seed"), 2)
    assert "--random-passwords" in line


def test_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    prod(monkeypatch)
    for args in (
        ["db", "current"],
        ["db", "migrate"],
        ["db", "seed", "--random-passwords"],
    ):
        line = one_line_error(invoke(*args), 1)
        assert "OperationalError" in line, line


def test_bad_configuration_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_ENV", "nope")
    for args in (["db", "current"], ["db", "migrate"], ["db", "seed"], ["app", "run"]):
        line = one_line_error(invoke(*args), 2)
        assert line.startswith("error: invalid configuration: env: "), line


def test_unsupported_database_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_DATABASE__URL", "mysql://db/ballast")
    line = one_line_error(invoke("db", "migrate"), 2)
    assert "database.url" in line
    assert "unsupported database 'mysql'" in line


def test_an_unknown_revision_is_one_line() -> None:
    line = one_line_error(invoke("db", "migrate", "no_such_revision"), 1)
    assert line.startswith("error: migration failed: ")


def test_an_unusable_sqlite_path_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("BALLAST_DATABASE__URL", f"sqlite:///{blocker}/sub/x.db")
    one_line_error(invoke("db", "current"), 1)


def test_config_errors_raised_inside_a_command_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise ConfigError("no database configured")

    monkeypatch.setattr("ballast_common.app.init_db", boom)
    line = one_line_error(invoke("db", "current"), 2)
    assert line == "error: no database configured"


def test_app_errors_raised_inside_a_command_exit_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise AppError("something expected went wrong\nsecond line")

    monkeypatch.setattr("ballast_common.app.init_db", boom)
    assert (
        one_line_error(invoke("db", "current"), 1)
        == "error: something expected went wrong"
    )


# -- app run (with a stand-in supervisor; the real one is in test_app_run.py) -------------


class FakeSupervisor:
    instances: ClassVar[list[FakeSupervisor]] = []
    bad: Sequence[str] = ()
    interrupted = False
    code = 0
    installed = ("api",)

    def __init__(self, components: Sequence[Component]) -> None:
        self.all = list(components)
        self.components = [c for c in components if c.name in self.installed]
        self.skipped = [c.name for c in components if c.name not in self.installed]
        self.calls: list[str] = []
        self.stopping = False
        type(self).instances.append(self)

    def start(self) -> None:
        self.calls.append("start")
        self.stopping = self.interrupted

    def wait_healthy(self, timeout_s: float = 60.0) -> list[str]:
        self.calls.append(f"wait_healthy {timeout_s}")
        return list(self.bad)

    def run_forever(self) -> int:
        self.calls.append("run_forever")
        return self.code

    def stop(self) -> None:
        self.calls.append("stop")


@pytest.fixture
def fake_supervisor(monkeypatch: pytest.MonkeyPatch) -> type[FakeSupervisor]:
    class Fake(FakeSupervisor):
        instances: ClassVar[list[FakeSupervisor]] = []

    monkeypatch.setattr("ballast_common.supervisor.Supervisor", Fake)
    return Fake


def test_app_run_starts_the_components_and_prints_the_urls(
    cli_env: str, fake_supervisor: type[FakeSupervisor]
) -> None:
    result = invoke("app", "run", "--api-port", "18000", "--ui-port", "18501")
    assert result.exit_code == 0, result.stderr
    (sup,) = fake_supervisor.instances
    assert sup.calls == ["start", "wait_healthy 60.0", "run_forever"]
    api = next(c for c in sup.all if c.name == "api")
    assert api.module == "ballast_api"
    assert api.health_url == "http://127.0.0.1:18000/healthz"
    assert api.env["BALLAST_API__PORT"] == "18000"
    assert api.env["BALLAST_UI__PORT"] == "18501"
    assert api.env["BALLAST_API_URL"] == "http://127.0.0.1:18000"
    assert [c.name for c in sup.all] == ["api", "ui", "worker"]
    out = result.stdout
    assert f"Ballast {VERSION} running (dev" in out
    assert "api     http://127.0.0.1:18000  (docs: http://127.0.0.1:18000/docs)" in out
    assert "not installed yet: ui, worker" in out
    assert out.rstrip().endswith("Press Ctrl-C to stop.")
    # It migrated the database first.
    db = DB(cli_env)
    try:
        assert current_revision(db) == head_revision()
    finally:
        db.dispose()


@pytest.mark.usefixtures("cli_env")
def test_app_run_names_the_workers_broker_without_its_password(
    fake_supervisor: type[FakeSupervisor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fake_supervisor, "installed", ("api", "ui", "worker"))
    result = invoke("app", "run")
    assert result.exit_code == 0, result.stderr
    assert "worker  2 processes, embedded broker in " in result.stdout
    monkeypatch.setenv("BALLAST_JOBS__BROKER_URL", "redis://:s3cret@redis:6379/0")
    result = invoke("app", "run")
    assert result.exit_code == 0, result.stderr
    assert "worker  2 processes, redis://:***@redis:6379/0" in result.stdout
    assert "s3cret" not in result.stdout


def test_app_run_host_and_no_migrate(
    cli_env: str, fake_supervisor: type[FakeSupervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeSupervisor, "installed", ("api", "ui", "worker"))
    result = invoke(
        "app", "run", "--host", "127.0.0.2", "--no-migrate", "--start-timeout", "5"
    )
    assert result.exit_code == 0
    (sup,) = fake_supervisor.instances
    assert sup.calls[1] == "wait_healthy 5.0"
    assert "ui      http://127.0.0.2:8501" in result.stdout
    assert "not installed" not in result.stdout
    db = DB(cli_env)
    try:
        assert current_revision(db) is None
    finally:
        db.dispose()


def test_app_run_uses_configured_ports(
    fake_supervisor: type[FakeSupervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BALLAST_API__PORT", "18111")
    monkeypatch.setenv("BALLAST_UI__PORT", "18222")
    assert invoke("app", "run").exit_code == 0
    (sup,) = fake_supervisor.instances
    assert sup.all[0].health_url == "http://127.0.0.1:18111/healthz"
    assert sup.all[1].health_url == "http://127.0.0.1:18222/_stcore/health"


@pytest.mark.usefixtures("fake_supervisor")
def test_app_run_exit_code_of_a_dead_component(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeSupervisor, "code", 3)
    assert invoke("app", "run").exit_code == 3


def test_app_run_unhealthy(
    fake_supervisor: type[FakeSupervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeSupervisor, "bad", ("api",))
    line = one_line_error(invoke("app", "run"), 1)
    assert line == "error: did not become healthy: api"
    (sup,) = fake_supervisor.instances
    assert sup.calls[-1] == "stop"
    assert "run_forever" not in sup.calls


def test_app_run_interrupted_while_starting(
    fake_supervisor: type[FakeSupervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeSupervisor, "interrupted", True)
    line = one_line_error(invoke("app", "run"), 130)
    assert "interrupted" in line
    (sup,) = fake_supervisor.instances
    assert sup.calls[-1] == "stop"


def test_app_run_stops_what_started_when_start_up_raises(
    fake_supervisor: type[FakeSupervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> list[str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(FakeSupervisor, "wait_healthy", broken)
    with pytest.raises(RuntimeError):
        invoke("app", "run")
    (sup,) = fake_supervisor.instances
    assert sup.calls == ["start", "stop"]


@pytest.mark.usefixtures("fake_supervisor")
def test_app_run_without_any_service_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeSupervisor, "installed", ())
    assert "no service package is installed" in one_line_error(invoke("app", "run"), 1)


def test_app_run_migration_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    prod(monkeypatch)
    assert "OperationalError" in one_line_error(invoke("app", "run"), 1)


# -- main() and plugins -----------------------------------------------------------------


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.target = target

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    sub = typer.Typer(help="A test plugin.")

    @sub.command("config-error")
    def _config_error() -> None:
        raise ConfigError("bad plugin setting")

    @sub.command("app-error")
    def _app_error() -> None:
        raise AppError("plugin failed")

    @sub.command("ok")
    def _ok() -> None:
        typer.echo("plugin ok")

    eps = [
        FakeEntryPoint("zzplugin", sub),
        FakeEntryPoint("broken", ImportError("nope")),
    ]
    monkeypatch.setattr(
        cli, "entry_points", lambda group: eps if group == "ballast.cli" else []
    )
    groups = list(app.registered_groups)
    yield sub
    app.registered_groups[:] = groups


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ballast", *args])
    with pytest.raises(SystemExit) as info:
        main()
    code = info.value.code
    return int(code) if code is not None else 0


@pytest.mark.usefixtures("plugin")
def test_main_loads_plugins_and_renders_their_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_main(monkeypatch, "zzplugin", "ok") == 0
    out, err = capsys.readouterr()
    assert out == "plugin ok\n"
    assert "warning: command group 'broken' failed to load: nope" in err

    assert run_main(monkeypatch, "zzplugin", "config-error") == 2
    assert capsys.readouterr().err.splitlines()[-1] == "error: bad plugin setting"
    assert run_main(monkeypatch, "zzplugin", "app-error") == 1
    assert capsys.readouterr().err.splitlines()[-1] == "error: plugin failed"


def test_main_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert run_main(monkeypatch, "--version") == 0
    assert capsys.readouterr().out == f"ballast {VERSION}\n"
