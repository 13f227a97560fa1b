"""The test harness's own servers work: PostgreSQL, private PostgreSQL, Redis."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
import redis

from ballast_testing import servers
from ballast_testing.servers import LocalPostgres, PostgresServer, RedisServer

pytestmark = pytest.mark.integration


class TestPostgresServer:
    def test_is_on_loopback(self, postgres_server: PostgresServer) -> None:
        assert postgres_server.host in servers.LOOPBACK_HOSTS
        assert postgres_server.port > 0
        assert f":{postgres_server.port}/" in postgres_server.admin_url

    def test_create_and_drop_database(self, postgres_server: PostgresServer) -> None:
        url = postgres_server.create_database("ballast_harness_tmp")
        assert url.endswith("/ballast_harness_tmp")
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (
                "ballast_harness_tmp",
            )
            # An open connection does not block the drop: it is terminated first.
            postgres_server.drop_database("ballast_harness_tmp")
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with postgres_server.connect() as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_database WHERE datname = 'ballast_harness_tmp'"
            ).fetchone()
        assert row == (0,)


class TestPgUrl:
    def test_create_table_and_query(self, pg_url: str) -> None:
        assert "/ballast_test_" in pg_url
        with psycopg.connect(pg_url) as conn:
            conn.execute(
                "CREATE TABLE harness_items (id serial PRIMARY KEY, name text NOT NULL)"
            )
            conn.execute("INSERT INTO harness_items (name) VALUES ('a'), ('b')")
            rows = conn.execute("SELECT name FROM harness_items ORDER BY id").fetchall()
            conn.rollback()
        assert rows == [("a",), ("b",)]


class TestPrivatePostgres:
    def test_kill_then_start(
        self, private_postgres: Callable[..., LocalPostgres]
    ) -> None:
        server = private_postgres()
        assert server.pid is not None
        with server.connect() as conn:
            conn.execute("CREATE TABLE survives (v int)")
            conn.execute("INSERT INTO survives VALUES (42)")

        victim = server.connect()
        server.kill()
        assert server.pid is None
        assert not server.running
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        victim.close()
        with pytest.raises(psycopg.OperationalError):
            server.connect()

        server.start()
        assert server.running
        assert server.pid is not None
        with server.connect() as conn:
            assert conn.execute("SELECT v FROM survives").fetchall() == [(42,)]

    def test_stop_then_start_and_settings(
        self, private_postgres: Callable[..., LocalPostgres]
    ) -> None:
        server = private_postgres(settings={"application_name": "ballast_harness"})
        with server.connect() as conn:
            assert conn.execute("SHOW application_name").fetchone() is not None
            assert conn.execute("SHOW max_connections").fetchone() == ("200",)
        server.stop()
        assert not server.running
        server.start()
        with server.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

    def test_is_separate_from_session_server(
        self,
        private_postgres: Callable[..., LocalPostgres],
        postgres_server: PostgresServer,
    ) -> None:
        server = private_postgres()
        assert server.port != postgres_server.port
        assert server.data_dir.is_dir()


class TestRedisServer:
    def test_set_get(self, redis_server: RedisServer) -> None:
        assert redis_server.url.startswith("redis://")
        client = redis.Redis.from_url(redis_server.url)
        try:
            client.set("ballast:harness", "ok", ex=60)
            assert client.get("ballast:harness") == b"ok"
            client.delete("ballast:harness")
        finally:
            client.close()


class TestEnvMode:
    def test_postgres_env_url_is_used(
        self, monkeypatch: pytest.MonkeyPatch, postgres_server: PostgresServer
    ) -> None:
        monkeypatch.setenv(servers.POSTGRES_URL_ENV, postgres_server.admin_url)
        with servers.provide_postgres() as server:
            assert type(server) is PostgresServer
            assert server.pid is None
            assert (server.host, server.port) == (
                postgres_server.host,
                postgres_server.port,
            )
            url = server.create_database("ballast_harness_env")
            try:
                with psycopg.connect(url) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
            finally:
                server.drop_database("ballast_harness_env")

    def test_redis_env_url_is_used(
        self, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
    ) -> None:
        monkeypatch.setenv(servers.REDIS_URL_ENV, redis_server.url)
        with servers.provide_redis() as server:
            assert server.url == redis_server.url
            assert server.pid is None
            assert server.ping()

    def test_unreachable_postgres_env_url_fails_clearly(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = f"postgresql://postgres@127.0.0.1:{servers.free_port()}/postgres"
        monkeypatch.setenv(servers.POSTGRES_URL_ENV, url)
        with (
            pytest.raises(servers.ServerUnavailableError, match="not reachable"),
            servers.provide_postgres(),
        ):
            pass

    @pytest.mark.parametrize(
        ("env", "url"),
        [
            (
                servers.POSTGRES_URL_ENV,
                "postgresql://postgres@db.example.com:5432/postgres",
            ),
            (servers.REDIS_URL_ENV, "redis://cache.example.com:6379/0"),
        ],
    )
    def test_non_loopback_env_url_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, env: str, url: str
    ) -> None:
        monkeypatch.setenv(env, url)
        provide = (
            servers.provide_postgres
            if env == servers.POSTGRES_URL_ENV
            else servers.provide_redis
        )
        with pytest.raises(servers.ServerUnavailableError, match="loopback"), provide():
            pass


class TestHelpers:
    def test_url_for_keeps_credentials_and_query(self) -> None:
        server = PostgresServer.from_url(
            "postgresql+psycopg://u:p@127.0.0.1:6543/postgres?sslmode=disable"
        )
        assert server.port == 6543
        assert (
            server.url_for("x")
            == "postgresql+psycopg://u:p@127.0.0.1:6543/x?sslmode=disable"
        )

    def test_find_postgres_bindir(self) -> None:
        bindir = servers.find_postgres_bindir()
        assert (bindir / "initdb").is_file()
        assert (bindir / "pg_ctl").is_file()
