"""`init_app()`: configuration, JSON logging and the default database for one process."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from ballast_common.app import AppContext, init_app
from ballast_common.config import load_config
from ballast_common.db import DB, current_revision, get_db, head_revision, reset_db
from ballast_common.telemetry import get_logger


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No BALLAST_* from the shell; undo init_app's global logging and default db."""
    for name in list(os.environ):  # noqa: TID251 - isolating the test from the shell
        if name.startswith("BALLAST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BALLAST_DATABASE__URL", f"sqlite:///{tmp_path}/app.db")
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == "ballast":
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    structlog.reset_defaults()
    reset_db()


def test_returns_config_and_db_and_sets_the_default(tmp_path: Path) -> None:
    cfg = load_config()
    ctx = init_app("unit", config=cfg, log_stream=io.StringIO())
    assert isinstance(ctx, AppContext)
    assert ctx.config is cfg
    assert ctx.service == "unit"
    assert isinstance(ctx.db, DB)
    assert get_db() is ctx.db
    assert ctx.db.is_sqlite
    assert ctx.db.url.database == f"{tmp_path}/app.db"
    assert ctx.db.health_check()


def test_loads_the_config_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_THEME", "dark")
    ctx = init_app("unit", log_stream=io.StringIO())
    assert ctx.config.theme == "dark"


def test_logs_json_lines_with_the_service_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    init_app("svc-under-test")
    get_logger("tests.app").info("hello_from_test", answer=42)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    hello = [line for line in lines if line["event"] == "hello_from_test"]
    assert len(hello) == 1
    assert hello[0]["service"] == "svc-under-test"
    assert hello[0]["answer"] == 42
    assert hello[0]["level"] == "info"


def test_log_level_and_stream_come_from_the_arguments_and_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_LOG_LEVEL", "WARNING")
    stream = io.StringIO()
    init_app("quiet", log_stream=stream)
    log = get_logger("tests.app")
    log.info("not_shown")
    log.warning("shown")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["shown"]


def test_does_not_migrate_by_default() -> None:
    ctx = init_app("unit", log_stream=io.StringIO())
    assert current_revision(ctx.db) is None


def test_migrate_db_brings_the_database_to_head() -> None:
    stream = io.StringIO()
    ctx = init_app("unit", migrate_db=True, log_stream=stream)
    assert current_revision(ctx.db) == head_revision() is not None
    migrated = [
        json.loads(line)
        for line in stream.getvalue().splitlines()
        if '"database_migrated"' in line
    ]
    assert migrated
    assert migrated[0]["revision"] == head_revision()
    # Running it again is harmless.
    ctx.db.dispose()
    again = init_app("unit", migrate_db=True, log_stream=io.StringIO())
    assert current_revision(again.db) == head_revision()
