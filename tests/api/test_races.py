"""Races and faults are absorbed, not surfaced: concurrent first saves, dropped and
exhausted database connections, an unreachable broker. Over SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncConnection

from ballast_api.main import create_app
from ballast_common.config import load_config
from ballast_common.db import DB, run_tx
from ballast_common.seed import seed_demo
from ballast_testing.servers import free_port
from tests.api.conftest import PASSWORDS, Api, _reset, make_config, new_id, open_session

pytestmark = (
    pytest.mark.serial
)  # an unrelated request answers within 1 s during an outage

T = TypeVar("T")
CLIENTS = 20
ERROR_KEYS = {"code", "message", "details", "trace_id"}


def concurrently(fn: Callable[[int], T], n: int = CLIENTS) -> list[T]:
    """Run `fn(0..n-1)` from `n` threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


@contextmanager
def custom_api(
    backend: str,
    seeded_dbs: dict[str, str],
    tmp_path: Path,
    *,
    url: str | None = None,
    db_options: dict[str, Any] | None = None,
    **config: Any,
) -> Iterator[Api]:
    """The real app like the `api` fixture, with database and config options of its own."""
    seeded = DB(seeded_dbs[backend])
    _reset(seeded)
    run_tx(seed_demo, db=seeded)
    cfg = make_config(tmp_path, **config)
    tokens = {u: open_session(seeded, cfg, u) for u in PASSWORDS}
    seeded.dispose()
    db = DB(url or seeded_dbs[backend], **(db_options or {}))
    app = create_app(config=cfg, db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, db, cfg, tokens)
        client.portal.call(db.adispose)
    db.dispose()


def assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert float(resp.headers["Retry-After"]) >= 1
    body = resp.json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == "unavailable"
    assert body["trace_id"]


class TestFirstSaveRace:
    def test_draft_field_from_20_clients_is_created_once(self, api: Api) -> None:
        def save(i: int) -> httpx.Response:
            item = {"form_id": "race.d", "field": "name", "value": f"v{i}", "seq": i}
            return api.client.put(
                "/v1/drafts",
                json={"items": [item]},
                headers=api.h("editor", **{"Idempotency-Key": new_id()}),
            )

        responses = concurrently(save)
        assert [r.status_code for r in responses] == [200] * CLIENTS, [
            r.text for r in responses if r.status_code != 200
        ]
        rows = api.sql(
            "SELECT value, client_seq, version FROM drafts WHERE form_id = 'race.d'"
        )
        assert len(rows) == 1
        assert api.audit_count(resource_type="drafts", action="create") == 1
        # Every applied value after the create is one audited update.
        applied = sum(r.json()["items"][0]["applied"] for r in responses)
        assert api.audit_count(resource_type="drafts", action="update") == applied - 1
        assert rows[0][2] == applied

    def test_draft_batch_with_one_write_id_from_20_clients_applies_once(
        self, api: Api
    ) -> None:
        wid = new_id()
        items = [
            {"form_id": "race.w", "field": f"f{n}", "value": n, "seq": 1}
            for n in range(3)
        ]

        def save(_i: int) -> httpx.Response:
            return api.client.put(
                "/v1/drafts",
                json={"items": items},
                headers=api.h("editor", **{"Idempotency-Key": wid}),
            )

        responses = concurrently(save)
        assert {r.status_code for r in responses} == {200}
        assert len({r.text for r in responses}) == 1
        assert api.audit_count(resource_type="drafts", action="create") == 3
        assert api.sql("SELECT count(*) FROM write_ids")[0][0] == 1

    def test_new_form_from_20_clients_one_create_the_others_409(self, api: Api) -> None:
        def save(i: int) -> httpx.Response:
            return api.client.put(
                "/v1/forms/race.f",
                json={"data": {"n": i}, "expected_version": 0},
                headers=api.h("editor", **{"Idempotency-Key": new_id()}),
            )

        responses = concurrently(save)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * (CLIENTS - 1), [r.text for r in responses]
        for r in responses:
            if r.status_code == 409:
                assert r.json()["details"]["current"]["version"] == 1
        assert api.sql("SELECT version FROM forms WHERE form_id = 'race.f'") == [(1,)]
        assert api.audit_count(resource_type="forms") == 1

    def test_new_form_without_version_from_20_clients_creates_once(
        self, api: Api
    ) -> None:
        def save(i: int) -> httpx.Response:
            return api.client.put(
                "/v1/forms/race.g",
                json={"data": {"n": i}},
                headers=api.h("editor", **{"Idempotency-Key": new_id()}),
            )

        responses = concurrently(save)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (CLIENTS - 1) + [201], [r.text for r in responses]
        assert api.sql("SELECT version FROM forms WHERE form_id = 'race.g'") == [
            (CLIENTS,)
        ]
        assert api.audit_count(resource_type="forms", action="create") == 1
        assert api.audit_count(resource_type="forms", action="update") == CLIENTS - 1


class TestDatabaseFaults:
    def test_pool_exhaustion_is_503_with_retry_after(
        self, backend: str, seeded_dbs: dict[str, str], tmp_path: Path
    ) -> None:
        options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3}
        with custom_api(backend, seeded_dbs, tmp_path, db_options=options) as api:
            assert (
                api.client.get("/v1/drafts", headers=api.h("editor")).status_code == 200
            )
            # The portal awaits the connection: the pool's only one is now checked out.
            held: AsyncConnection = api.client.portal.call(api.db.async_engine.connect)
            try:
                assert_unavailable(
                    api.client.get("/v1/drafts", headers=api.h("editor"))
                )
                assert_unavailable(
                    api.client.put(
                        "/v1/forms/pool.f",
                        json={"data": {}},
                        headers=api.h("editor"),
                    )
                )
            finally:
                api.client.portal.call(held.close)
            assert (
                api.client.get("/v1/drafts", headers=api.h("editor")).status_code == 200
            )

    def test_pool_limits_come_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BALLAST_DATABASE__URL", f"sqlite:///{tmp_path}/env.db")
        monkeypatch.setenv("BALLAST_DATABASE__POOL_SIZE", "3")
        monkeypatch.setenv("BALLAST_DATABASE__MAX_OVERFLOW", "2")
        monkeypatch.setenv("BALLAST_DATABASE__POOL_TIMEOUT", "0.25")
        db = DB.from_config(load_config().database)
        try:
            pool: Any = db.async_engine.sync_engine.pool
            assert (pool.size(), pool._max_overflow, pool.timeout()) == (3, 2, 0.25)
        finally:
            db.dispose()

    def test_unreachable_database_is_503_with_retry_after(
        self, seeded_dbs: dict[str, str], tmp_path: Path
    ) -> None:
        # Nothing listens on this port: every attempt is refused, retries run out.
        dead = f"postgresql://postgres@127.0.0.1:{free_port()}/ballast"
        with custom_api(
            "sqlite", seeded_dbs, tmp_path, url=dead, db_options={"tx_retries": 2}
        ) as api:
            assert_unavailable(api.client.get("/v1/drafts", headers=api.h("editor")))
            assert_unavailable(api.login("editor"))
            assert_unavailable(
                api.client.put(
                    "/v1/forms/dead.f", json={"data": {}}, headers=api.h("editor")
                )
            )

    @pytest.mark.integration
    def test_dropped_connections_are_retried_including_authentication(
        self, seeded_dbs: dict[str, str], tmp_path: Path
    ) -> None:
        name = f"ballast-race-{uuid.uuid4().hex[:8]}"
        with custom_api(
            "postgresql", seeded_dbs, tmp_path, db_options={"application_name": name}
        ) as api:
            for n in range(5):
                # Warm the pool, then kill every pooled connection of the app.
                api.client.get("/v1/drafts", headers=api.h("editor"))
                killed = api.sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()",
                    name=name,
                )
                assert killed, "the app held no connection to kill"
                got = api.client.get("/v1/drafts", headers=api.h("editor"))
                assert got.status_code == 200, got.text
                api.sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()",
                    name=name,
                )
                saved = api.client.put(
                    f"/v1/forms/drop.{n}",
                    json={"data": {"n": n}},
                    headers=api.h("editor", **{"Idempotency-Key": new_id()}),
                )
                assert saved.status_code == 201, saved.text
            assert api.audit_count(resource_type="forms", action="create") == 5


class _BlackHole:
    """A TCP port that accepts connections (kernel backlog) and never answers: a hung
    Redis. Closing it resets the pending connections."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"

    def close(self) -> None:
        self.sock.close()


class TestBrokerOutage:
    @pytest.mark.parametrize("outage", ["closed_port", "hung_broker"])
    def test_enqueue_never_stalls_unrelated_requests(
        self, backend: str, seeded_dbs: dict[str, str], tmp_path: Path, outage: str
    ) -> None:
        hole = _BlackHole()
        broker = (
            f"redis://127.0.0.1:{free_port()}/0"
            if outage == "closed_port"
            else hole.url
        )
        pool = ThreadPoolExecutor(8)
        try:
            with custom_api(
                backend, seeded_dbs, tmp_path, jobs={"broker_url": broker}
            ) as api:

                def enqueue(_i: int) -> httpx.Response:
                    return api.client.post(
                        "/v1/jobs",
                        json={"name": "demo.sleep", "kwargs": {"seconds": 0.1}},
                        headers=api.h("editor"),
                    )

                def timed(fn: Callable[[], httpx.Response]) -> tuple[float, int]:
                    start = time.perf_counter()
                    status = fn().status_code
                    return time.perf_counter() - start, status

                # Warm up the app (first request, sender creation) with the broker down.
                jobs = [pool.submit(enqueue, i) for i in range(4)]
                time.sleep(0.2)
                probes = [
                    pool.submit(timed, lambda: api.client.get("/healthz")),
                    pool.submit(
                        timed,
                        lambda: api.client.put(
                            "/v1/drafts",
                            json={
                                "items": [
                                    {"form_id": "b", "field": "x", "value": 1, "seq": 1}
                                ]
                            },
                            headers=api.h("editor"),
                        ),
                    ),
                ]
                # Wait for the probes with a bound, then end the outage so nothing hangs.
                results = []
                for probe in probes:
                    try:
                        results.append(probe.result(timeout=5))
                    except TimeoutError:
                        results.append((float("inf"), 0))
                hole.close()
                answered = [j.result(timeout=60) for j in jobs]
                assert [s for _, s in results] == [200, 200]
                # An unrelated request waits for no broker (generously bounded).
                assert max(t for t, _ in results) < 1.0, results
                # The job is stored; its message is left to the sweeper.
                assert [r.status_code for r in answered] == [201] * 4, [
                    r.text for r in answered
                ]
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    undispatched = api.sql(
                        "SELECT count(*) FROM jobs WHERE dispatched_at IS NULL "
                        "AND status = 'PENDING'"
                    )[0][0]
                    if undispatched == 4:
                        break
                    time.sleep(0.1)
                assert undispatched == 4
        finally:
            hole.close()
            pool.shutdown(wait=True, cancel_futures=True)
