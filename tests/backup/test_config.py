"""The `backup` block of AppConfig."""

from __future__ import annotations

import pytest

from ballast_common.config import load_config
from ballast_common.errors import ConfigError


def test_defaults() -> None:
    cfg = load_config()
    assert cfg.backup.prefix == "backups"
    assert (cfg.backup.keep_hourly, cfg.backup.keep_daily, cfg.backup.keep_weekly) == (
        24,
        7,
        4,
    )


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_BACKUP__KEEP_DAILY", "14")
    monkeypatch.setenv("BALLAST_BACKUP__PREFIX", "db-backups/prod")
    cfg = load_config()
    assert cfg.backup.keep_daily == 14
    assert cfg.backup.prefix == "db-backups/prod"


@pytest.mark.parametrize(
    ("name", "value"), [("KEEP_HOURLY", "-1"), ("PREFIX", "../escape")]
)
def test_bad_values_are_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"BALLAST_BACKUP__{name}", value)
    with pytest.raises(ConfigError, match=f"backup.{name.lower()}"):
        load_config()
