"""State API fixtures: the real app over SQLite and over PostgreSQL (asyncpg)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from ballast_api.main import create_app
from ballast_common.config import AppConfig
from ballast_common.db import DB, migrate, run_tx
from ballast_common.models import Model, User, UserSession, utcnow
from ballast_common.security import hash_token, new_token
from ballast_common.seed import seed_demo

PASSWORDS = {
    "admin": "admin-demo-pass",
    "editor": "editor-demo-pass",
    "viewer": "viewer-demo-pass",
}


@dataclass
class Api:
    client: TestClient
    db: DB
    config: AppConfig
    tokens: dict[str, str]

    def h(self, user: str, **extra: str) -> dict[str, str]:
        """Headers authenticating as `user` (admin / editor / viewer)."""
        return {"Authorization": f"Bearer {self.tokens[user]}", **extra}

    def login(self, user: str, password: str | None = None) -> Any:
        return self.client.post(
            "/v1/sessions",
            json={"username": user, "password": password or PASSWORDS[user]},
        )

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.db.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    def audit_count(self, **where: Any) -> int:
        clause = " AND ".join(f"{k} = :{k}" for k in where) or "1=1"
        return int(
            self.sql(f"SELECT count(*) FROM audit_log WHERE {clause}", **where)[0][0]
        )


# Tables whose rows survive between tests: the seeded users and the role model.
_KEEP = {"users", "roles", "permissions", "user_roles", "role_permissions"}


def _reset(db: DB) -> None:
    """Empty every data table, keep the seeded users (argon2 hashing is slow on purpose)."""
    tables = [
        t.name for t in reversed(Model.metadata.sorted_tables) if t.name not in _KEEP
    ]
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for t in tables:
                conn.exec_driver_sql(f"DELETE FROM {t}")
        else:
            conn.exec_driver_sql(
                f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"
            )
        # Other suites (the fuzzer, user admin tests) may add users or change the demo ones.
        conn.exec_driver_sql(
            "DELETE FROM users WHERE username NOT IN ('admin', 'editor', 'viewer')"
        )
        conn.execute(
            update(User).values(
                is_active=True,
                preferences={"theme": "auto", "language": "en", "timezone": "UTC"},
            )
        )


def _seeded(db: DB) -> DB:
    migrate(db=db)
    run_tx(seed_demo, db=db)
    return db


@pytest.fixture(scope="session")
def seeded_dbs(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One migrated, seeded database per backend for the whole session."""
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('api')}/api.db"
    for url in (sqlite_url, pg_url):
        _seeded(DB(url)).dispose()
    return {"sqlite": sqlite_url, "postgresql": pg_url}


def make_config(tmp_path: Path, **overrides: Any) -> AppConfig:
    return AppConfig(paths={"data_dir": tmp_path / "data"}, **overrides)


def open_session(db: DB, config: AppConfig, username: str) -> str:
    """A session token for `username`, made directly (login itself is tested on its own)."""
    token = new_token()
    now = utcnow()
    digest = hash_token(token, config.security.secret_key.get_secret_value())
    with db.session() as session, session.begin():
        user_id = session.execute(
            select(User.id).where(User.username == username)
        ).scalar_one()
        session.add(
            UserSession(
                user_id=user_id,
                token_hash=digest,
                created_at=now,
                last_seen_at=now,
                expires_at=now
                + timedelta(seconds=config.security.session_absolute_timeout_s),
            )
        )
    return token


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.applymarker(pytest.mark.integration)
    return str(request.param)


@pytest.fixture
def api(backend: str, seeded_dbs: dict[str, str], tmp_path: Path) -> Iterator[Api]:
    db = DB(seeded_dbs[backend])
    _reset(db)
    run_tx(seed_demo, db=db)
    config = make_config(tmp_path)
    app = create_app(config=config, db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(
            client, db, config, {u: open_session(db, config, u) for u in PASSWORDS}
        )
        yield api
        client.portal.call(db.adispose)
    db.dispose()


def new_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def peer_clients(seeded_dbs: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """`peer_clients(peer, **sections)`: the api (SQLite, seeded afresh) as seen from
    the address `peer`; `sections` go to `make_config` (security=..., auth=...)."""
    db = DB(seeded_dbs["sqlite"])
    _reset(db)
    run_tx(seed_demo, db=db)
    opened: list[TestClient] = []

    def make(peer: str, **sections: Any) -> TestClient:
        client = TestClient(
            create_app(config=make_config(tmp_path, **sections), db=db),
            raise_server_exceptions=False,
            client=(peer, 51000),
        )
        client.__enter__()
        opened.append(client)
        return client

    try:
        yield make
    finally:
        for client in opened:
            client.portal.call(db.adispose)  # type: ignore[union-attr]
            client.__exit__(None, None, None)
        db.dispose()
