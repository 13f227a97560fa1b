"""`init_app()`: wire configuration, logging, the database and the cache for one process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from ballast_common.cache import Cache, init_cache
from ballast_common.config import AppConfig, load_config
from ballast_common.db.engine import DB, init_db
from ballast_common.db.migrate import migrate
from ballast_common.telemetry import configure_logging, get_logger


@dataclass(frozen=True)
class AppContext:
    config: AppConfig
    db: DB
    service: str
    cache: Cache | None = None


def init_app(
    service: str = "ballast",
    *,
    config: AppConfig | None = None,
    migrate_db: bool = False,
    log_stream: IO[str] | None = None,
    listen_for_busts: bool = True,
) -> AppContext:
    """Initialise a Ballast process: config, structured logging, default database, cache.

    Args:
        service: the process's name in logs and in pg_stat_activity.
        config: a loaded configuration (default: `load_config()`).
        migrate_db: run pending migrations (the embedded default does; in a cluster the
            hook Job does and pods never migrate at start-up).
        log_stream: where log lines go (default: stdout; the CLI keeps stdout for its
            own output and logs to stderr).
        listen_for_busts: the process's cache takes other replicas' busts (a serving
            process must; a one-off CLI command only busts what it writes).

    The cache (`ballast_common.cache`) is L1 + Redis when `cache.redis_url` or
    `redis_url` is set, L1 only otherwise (the embedded default): the audited writes of
    this process then bust the other processes' caches through Redis.
    """
    cfg = config or load_config()
    configure_logging(
        service, level=cfg.log_level, fmt=cfg.log_format, stream=log_stream
    )
    db = init_db(cfg.database, application_name=f"{cfg.env.value}.{service}")
    if migrate_db:
        revision = migrate(db=db)
        get_logger(__name__).info("database_migrated", revision=revision)
    cache = init_cache(cfg, listen=listen_for_busts)
    get_logger(__name__).info("cache_ready", l2=cache.ping())
    return AppContext(config=cfg, db=db, service=service, cache=cache)
