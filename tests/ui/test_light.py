"""The UI runs without the server extras of ballast_common: its image ships no database
drivers, ORM, migrations, password hashing, object-store or broker clients. It carries
redis-py for the cache's L2 (`ballast-common[cache]`), and runs without it too (L1 only):
redis stays blocked here."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ballast_common import config

SERVER_ONLY = (
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "psycopg",
    "argon2",
    "pwdlib",
    "boto3",
    "botocore",
    "redis",
    "celery",
    "kombu",
)
UI_MODULES = (
    "ballast_ui.app",
    "ballast_ui.client",
    "ballast_ui.server",
    "ballast_ui.cli",
    "ballast_ui.pages",
    "ballast_ui.widgets",
    "ballast_ui.outbox",
    "ballast_ui.state",
    "ballast_ui.__main__",
)


def _import_without_server_extras(
    modules: tuple[str, ...],
) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(f"""
        import importlib, sys
        from importlib.abc import MetaPathFinder

        BLOCKED = {SERVER_ONLY!r}

        class Block(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"{{name}} is not installed in the UI image")
                return None

        sys.meta_path.insert(0, Block())
        for module in {modules!r}:
            importlib.import_module(module)
        from ballast_common.config import load_config

        cfg = load_config(database={{"url": "postgresql://app:pw@db/ballast"}})
        assert cfg.database.url.startswith("postgresql://"), cfg.database.url
        print("ok")
        """)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )


def test_the_ui_imports_without_server_extras() -> None:
    done = _import_without_server_extras(UI_MODULES)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_the_blocker_blocks() -> None:
    done = _import_without_server_extras(("ballast_common.db",))
    assert done.returncode != 0
    assert "is not installed in the UI image" in done.stderr


def test_database_settings_are_carried_without_sqlalchemy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "_HAS_SQLALCHEMY", False)
    db = config.DatabaseConfig(url="postgresql://app:secret@db/ballast")
    assert db.url == "postgresql://app:secret@db/ballast"
    assert db.password is None
    assert config._parse_url(db.url) is None


def test_installed_is_false_for_a_missing_or_refused_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert config._installed("json")
    assert not config._installed("ballast_no_such_module")

    def refuse(name: str) -> None:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(config.importlib.util, "find_spec", refuse)
    assert not config._installed("sqlalchemy")
