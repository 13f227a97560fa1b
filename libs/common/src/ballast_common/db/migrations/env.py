"""Alembic environment: runs on SQLite (batch mode for ALTERs) and PostgreSQL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from ballast_common.config import load_config
from ballast_common.db.engine import normalize_url
from ballast_common.models import Model

config = context.config
target_metadata = Model.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # PostgreSQL (see ballast_common.db.migrate): one transaction per migration file,
        # so a migration may leave the transaction (autocommit_block) for statements
        # such as CREATE INDEX CONCURRENTLY.
        transaction_per_migration=bool(
            config.attributes.get("transaction_per_migration")
        ),
        # SQLite cannot ALTER most things in place: batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = (
        config.get_main_option("sqlalchemy.url")
        or load_config().database.url_with_password()
    )
    engine = engine_from_config(
        {"sqlalchemy.url": normalize_url(url).render_as_string(hide_password=False)},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit(
        "offline (--sql) migrations are not supported; run against a database"
    )
run_migrations()
