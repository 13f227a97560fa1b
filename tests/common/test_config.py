"""`AppConfig` / `load_config()`: sources, precedence, secrets and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from ballast_common.config import (
    CONFIG_FILE_ENV,
    DEV_SECRET_KEY,
    AppConfig,
    DatabaseConfig,
    Env,
    load_config,
)
from ballast_common.errors import ConfigError

GOOD_KEY = "k3y-" + "x" * 40
PG_URL = "postgresql://app@db.internal:5432/ballast"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BALLAST_* variable of the surrounding shell leaks into these tests."""
    for name in list(os.environ):  # noqa: TID251 - isolating the test from the shell
        if name.startswith("BALLAST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TOML config file named by BALLAST_CONFIG_FILE (write its text in the test)."""
    path = tmp_path / "ballast.toml"
    path.write_text("", encoding="utf-8")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    return path


def prod_env(monkeypatch: pytest.MonkeyPatch, env: str = "prod") -> None:
    monkeypatch.setenv("BALLAST_ENV", env)
    monkeypatch.setenv("BALLAST_SECURITY__SECRET_KEY", GOOD_KEY)
    monkeypatch.setenv("BALLAST_DATABASE__URL", PG_URL)


def error_of() -> str:
    with pytest.raises(ConfigError) as info:
        load_config()
    message = info.value.message
    assert "\n" not in message, "config errors are one line"
    assert info.value.code == "config_error"
    return message


# -- defaults and sources ---------------------------------------------------------------


def test_defaults_are_the_embedded_dev_setup() -> None:
    cfg = load_config()
    assert cfg.env is Env.dev
    assert cfg.database.url == "sqlite:///./var/ballast.db"
    assert cfg.database.is_sqlite
    assert cfg.database.password is None
    assert cfg.paths.data_dir == Path("./var")
    assert cfg.paths.backup_path == Path("./var/backups")
    assert (cfg.api.host, cfg.api.port) == ("127.0.0.1", 8000)
    assert (cfg.ui.host, cfg.ui.port) == ("127.0.0.1", 8501)
    assert cfg.security.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert cfg.security.session_idle_timeout_s == 1800
    assert (cfg.mode, cfg.theme, cfg.compute) == ("online", "auto", "fast")
    assert cfg.redis_url is None
    assert cfg.jobs.broker_url is None
    assert cfg.features == {}


def test_environment_overrides_top_level_and_nested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_DATABASE__URL", "sqlite:////data/other.db")
    monkeypatch.setenv("BALLAST_SECURITY__SESSION_IDLE_TIMEOUT_S", "60")
    monkeypatch.setenv("BALLAST_API__PORT", "9001")
    monkeypatch.setenv("BALLAST_THEME", "dark")
    monkeypatch.setenv("BALLAST_COMPUTE", "accurate")
    monkeypatch.setenv("BALLAST_PERFORMANCE__PAGE_SIZE", "50")
    monkeypatch.setenv("BALLAST_FEATURES__BETA", "true")
    cfg = load_config()
    assert cfg.database.url == "sqlite:////data/other.db"
    assert cfg.security.session_idle_timeout_s == 60
    assert cfg.api.port == 9001
    assert cfg.theme == "dark"
    assert cfg.compute == "accurate"
    assert cfg.performance.page_size == 50
    assert cfg.feature("beta") is True
    assert cfg.feature("other") is False
    assert cfg.feature("other", default=True) is True


def test_features_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_FEATURES", '{"analysis": true, "import": false}')
    assert load_config().features == {"analysis": True, "import": False}


def test_empty_environment_values_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_THEME", "")
    assert load_config().theme == "auto"


def test_keyword_overrides_beat_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_THEME", "dark")
    assert load_config(theme="light").theme == "light"


def test_values_from_the_toml_file(config_file: Path) -> None:
    config_file.write_text(
        """
theme = "dark"
compute = "accurate"

[database]
url = "postgresql://app@db.internal/ballast"
pool_size = 3

[security]
session_idle_timeout_s = 120

[features]
analysis = true
""",
        encoding="utf-8",
    )
    cfg = load_config()
    assert cfg.theme == "dark"
    assert cfg.compute == "accurate"
    assert cfg.database.url == "postgresql://app@db.internal/ballast"
    assert cfg.database.pool_size == 3
    assert cfg.security.session_idle_timeout_s == 120
    assert cfg.feature("analysis")


def test_environment_beats_the_file_and_nested_values_merge(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text(
        '[database]\nurl = "sqlite:///from-file.db"\npool_size = 3\n'
        '[api]\nport = 9100\nhost = "0.0.0.0"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BALLAST_DATABASE__URL", "sqlite:///from-env.db")
    monkeypatch.setenv("BALLAST_API__PORT", "9200")
    cfg = load_config()
    assert cfg.database.url == "sqlite:///from-env.db"
    assert cfg.database.pool_size == 3, "the file's sibling value survives"
    assert cfg.api.port == 9200
    assert cfg.api.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("toml", "env_var"),
    [
        ('[security]\nsecret_key = "abc"\n', "BALLAST_SECURITY__SECRET_KEY"),
        ('[database]\npassword = "abc"\n', "BALLAST_DATABASE__PASSWORD"),
        ('[s3]\nsecret_access_key = "abc"\n', "BALLAST_S3__SECRET_ACCESS_KEY"),
        ('[security]\nsecret_key = ""\n', "BALLAST_SECURITY__SECRET_KEY"),
    ],
)
def test_a_secret_in_the_file_is_an_error_naming_the_env_var(
    config_file: Path, toml: str, env_var: str
) -> None:
    config_file.write_text(toml, encoding="utf-8")
    message = error_of()
    assert env_var in message
    assert "environment variables only" in message


def test_a_secret_in_the_file_is_an_error_even_when_the_env_has_it(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text('[security]\nsecret_key = "abc"\n', encoding="utf-8")
    monkeypatch.setenv("BALLAST_SECURITY__SECRET_KEY", GOOD_KEY)
    assert "BALLAST_SECURITY__SECRET_KEY" in error_of()


def test_a_password_in_the_file_database_url_is_an_error(config_file: Path) -> None:
    config_file.write_text(
        '[database]\nurl = "postgresql://app:hunter2@db/ballast"\n', encoding="utf-8"
    )
    message = error_of()
    assert "contains a password" in message
    assert "BALLAST_DATABASE__PASSWORD" in message
    assert "hunter2" not in message


def test_a_missing_config_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "nope.toml"))
    assert "config file not found" in error_of()


def test_an_unreadable_config_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path))  # a directory
    assert "cannot read config file" in error_of()


def test_invalid_toml_is_an_error(config_file: Path) -> None:
    config_file.write_text("theme = = dark\n", encoding="utf-8")
    assert "is not valid TOML" in error_of()


def test_an_unparsable_url_in_the_file_is_a_config_error(config_file: Path) -> None:
    config_file.write_text('[database]\nurl = "not a url"\n', encoding="utf-8")
    message = error_of()
    assert message.startswith("invalid configuration: database.url:")


def test_a_bad_value_in_the_file_names_the_field(config_file: Path) -> None:
    config_file.write_text("[cache]\nttl = 0\n", encoding="utf-8")
    assert error_of().startswith("invalid configuration: cache.ttl:")


# -- bad values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("BALLAST_ENV", "nope", "env"),
        (
            "BALLAST_SECURITY__SESSION_IDLE_TIMEOUT_S",
            "abc",
            "security.session_idle_timeout_s",
        ),
        (
            "BALLAST_SECURITY__SESSION_IDLE_TIMEOUT_S",
            "1",
            "security.session_idle_timeout_s",
        ),
        ("BALLAST_API__PORT", "70000", "api.port"),
        ("BALLAST_API__METRICS_PORT", "0", "api.metrics_port"),
        # The metrics port is apart from the main one (which the Ingress routes).
        ("BALLAST_UI__METRICS_PORT", "8501", "ui"),
        ("BALLAST_DATABASE__POOL_SIZE", "0", "database.pool_size"),
        ("BALLAST_THEME", "purple", "theme"),
        ("BALLAST_LOG_LEVEL", "CHATTY", "log_level"),
        ("BALLAST_DATABASE__URL", "mysql://db/ballast", "database.url"),
        ("BALLAST_DATABASE__URL", "not a url", "database.url"),
    ],
)
def test_a_bad_value_is_a_one_line_error_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(name, value)
    assert error_of().startswith(f"invalid configuration: {field}: ")


def test_a_partial_ui_setting_keeps_the_ui_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before, BALLAST_UI__HOST alone put the ui on the api's default port 8000.
    monkeypatch.setenv("BALLAST_UI__HOST", "0.0.0.0")
    monkeypatch.setenv("BALLAST_UI__METRICS_PORT", "9104")
    cfg = load_config()
    assert (cfg.ui.host, cfg.ui.port, cfg.ui.metrics_port) == ("0.0.0.0", 8501, 9104)
    assert (cfg.api.port, cfg.api.metrics_port) == (8000, None)


def test_unsupported_database_says_what_is_supported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_DATABASE__URL", "mysql://db/ballast")
    message = error_of()
    assert "'mysql'" in message
    assert "sqlite:///" in message
    assert "postgresql://" in message


def test_several_bad_values_are_reported_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_ENV", "nope")
    monkeypatch.setenv("BALLAST_API__PORT", "0")
    message = error_of()
    assert "env: " in message
    assert "api.port: " in message


def test_unparsable_json_in_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_FEATURES", "not-json")
    message = error_of()
    assert message.startswith("invalid configuration: ")
    assert "features" in message


# -- stage / prod refuse insecure settings ---------------------------------------------


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_stage_and_prod_refuse_the_missing_default_secret(
    monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.setenv("BALLAST_ENV", env)
    monkeypatch.setenv("BALLAST_DATABASE__URL", PG_URL)
    message = error_of()
    assert f"refusing to start in {env}" in message
    assert "BALLAST_SECURITY__SECRET_KEY" in message


@pytest.mark.parametrize("key", ["changeme", "secret", DEV_SECRET_KEY, "short-key"])
def test_prod_refuses_default_or_short_secrets(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    prod_env(monkeypatch)
    monkeypatch.setenv("BALLAST_SECURITY__SECRET_KEY", key)
    message = error_of()
    assert "BALLAST_SECURITY__SECRET_KEY" in message
    assert key not in message.replace("BALLAST_SECURITY__SECRET_KEY", "")


def test_prod_refuses_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    prod_env(monkeypatch)
    monkeypatch.delenv("BALLAST_DATABASE__URL")
    assert "BALLAST_DATABASE__URL must name a PostgreSQL database" in error_of()


def test_prod_refuses_a_default_database_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prod_env(monkeypatch)
    monkeypatch.setenv("BALLAST_DATABASE__PASSWORD", "changethis")
    assert "BALLAST_DATABASE__PASSWORD is a default value" in error_of()


def test_prod_refuses_a_default_password_inside_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prod_env(monkeypatch)
    monkeypatch.setenv("BALLAST_DATABASE__URL", "postgresql://app:password@db/ballast")
    assert "BALLAST_DATABASE__PASSWORD is a default value" in error_of()


def test_prod_refuses_an_object_store_key_id_without_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prod_env(monkeypatch)
    monkeypatch.setenv("BALLAST_S3__ENDPOINT_URL", "https://s3.internal")
    monkeypatch.setenv("BALLAST_S3__ACCESS_KEY_ID", "AKIAEXAMPLE")
    assert "BALLAST_S3__SECRET_ACCESS_KEY" in error_of()
    monkeypatch.setenv("BALLAST_S3__SECRET_ACCESS_KEY", "changeme")
    assert "BALLAST_S3__SECRET_ACCESS_KEY" in error_of()


def test_prod_reaches_the_object_store_with_the_pods_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No static keys at all (IRSA / EKS Pod Identity): boto3's default credential chain.
    prod_env(monkeypatch)
    monkeypatch.setenv("BALLAST_DATABASE__PASSWORD", "a-real-db-password")
    monkeypatch.setenv("BALLAST_S3__ENDPOINT_URL", "https://s3.internal")
    cfg = load_config()
    assert cfg.s3.access_key_id is None
    assert cfg.s3.secret_access_key is None


def test_prod_lists_every_problem_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_ENV", "prod")
    message = error_of()
    assert "BALLAST_SECURITY__SECRET_KEY" in message
    assert "BALLAST_DATABASE__URL" in message


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_prod_with_a_proper_secret_and_postgres_starts(
    monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    prod_env(monkeypatch, env)
    monkeypatch.setenv("BALLAST_DATABASE__PASSWORD", "a-real-db-password")
    monkeypatch.setenv("BALLAST_S3__ENDPOINT_URL", "https://s3.internal")
    monkeypatch.setenv("BALLAST_S3__SECRET_ACCESS_KEY", "a-real-s3-secret")
    cfg = load_config()
    assert cfg.env == Env(env)
    assert cfg.security.secret_key.get_secret_value() == GOOD_KEY
    assert not cfg.database.is_sqlite


def test_dev_accepts_the_dev_secret() -> None:
    assert (
        load_config(env="dev").security.secret_key.get_secret_value() == DEV_SECRET_KEY
    )


# -- database URL and password ----------------------------------------------------------


def test_url_with_password_fills_in_the_secret_escaped() -> None:
    cfg = DatabaseConfig(url=PG_URL, password=SecretStr("p@ss/w:rd%"))
    rendered = cfg.url_with_password()
    url = make_url(rendered)
    assert url.password == "p@ss/w:rd%"
    assert (url.username, url.host, url.port, url.database) == (
        "app",
        "db.internal",
        5432,
        "ballast",
    )
    assert "p@ss" not in cfg.url


def test_url_with_password_without_a_password_is_the_url() -> None:
    assert DatabaseConfig(url=PG_URL).url_with_password() == PG_URL
    empty = DatabaseConfig(url=PG_URL, password=SecretStr(""))
    assert make_url(empty.url_with_password()).password is None


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_DATABASE__URL", PG_URL)
    monkeypatch.setenv("BALLAST_DATABASE__PASSWORD", "from-env-pw")
    cfg = load_config()
    assert make_url(cfg.database.url_with_password()).password == "from-env-pw"


def test_a_password_in_an_env_url_becomes_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "BALLAST_DATABASE__URL", "postgresql://app:s3cr%40t@db:5432/ballast"
    )
    cfg = load_config()
    assert cfg.database.url == "postgresql://app@db:5432/ballast"
    assert cfg.database.password is not None
    assert cfg.database.password.get_secret_value() == "s3cr@t"
    assert make_url(cfg.database.url_with_password()).password == "s3cr@t"
    assert "s3cr" not in repr(cfg)


def test_a_password_given_twice_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_DATABASE__URL", "postgresql://app:PW-ONE@db/ballast")
    monkeypatch.setenv("BALLAST_DATABASE__PASSWORD", "PW-TWO")
    message = error_of()
    assert "password is given twice" in message
    assert "PW-" not in message


def test_is_sqlite() -> None:
    assert DatabaseConfig(url="sqlite:///x.db").is_sqlite
    assert DatabaseConfig(url="sqlite+pysqlite:///x.db").is_sqlite
    assert not DatabaseConfig(url="postgresql+psycopg://a@b/c").is_sqlite


# -- secrets never show -------------------------------------------------------------------


def test_secrets_never_show_in_repr_str_or_dumps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prod_env(monkeypatch)
    monkeypatch.setenv("BALLAST_SECURITY__SECRET_KEY", "SEKRIT-KEY-0123456789")
    monkeypatch.setenv("BALLAST_DATABASE__PASSWORD", "SEKRIT-DB-PW")
    monkeypatch.setenv("BALLAST_S3__ENDPOINT_URL", "https://s3.internal")
    monkeypatch.setenv("BALLAST_S3__SECRET_ACCESS_KEY", "SEKRIT-S3")
    cfg = load_config()
    shown = " ".join(
        [
            repr(cfg),
            str(cfg),
            repr(cfg.database),
            str(cfg.security),
            cfg.model_dump_json(),
            str(cfg.model_dump()),
        ]
    )
    assert "SEKRIT" not in shown
    assert "**********" in shown
    assert isinstance(cfg.security.secret_key, SecretStr)


def test_app_config_is_a_settings_class() -> None:
    assert isinstance(load_config(), AppConfig)
