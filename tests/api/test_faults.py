"""Faults against the real server (`python -m ballast_api` under uvicorn): connections
killed every 2 s during 200 idempotent writes, and the event loop under a burst of
wrong-password logins."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ballast_common.db import DB
from ballast_testing.api import api_process
from ballast_testing.servers import PostgresServer
from ballast_testing.stats import percentile
from tests.api.conftest import _seeded

pytestmark = [
    pytest.mark.integration,
    pytest.mark.serial,
]  # serial: latency percentiles under load

WRITES = 200
WRITERS = 8
KILL_EVERY_S = 2.0


def _env(tmp_path: Path, **env: str) -> dict[str, str]:
    return {"BALLAST_PATHS__DATA_DIR": str(tmp_path / "data"), **env}


def test_healthz_p99_under_50ms_during_20_concurrent_wrong_password_logins(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/api.db"
    _seeded(DB(url)).dispose()
    # Real users and unknown ones: both verify an argon2 hash.
    names = ["admin", "editor", "viewer"] + [f"nobody{i}" for i in range(17)]
    with api_process(url, env=_env(tmp_path), log_path=tmp_path / "api.log") as base:
        done = threading.Event()

        def logins(name: str) -> list[int]:
            with httpx.Client(base_url=base, timeout=30) as client:
                return [
                    client.post(
                        "/v1/sessions",
                        json={"username": name, "password": "wrong-password-123"},
                    ).status_code
                    for _ in range(3)
                ]

        samples: list[float] = []
        with httpx.Client(base_url=base, timeout=10) as probe:
            for _ in range(20):  # warm the connection and the server
                probe.get("/healthz")
            # The same probe with no login running: what this machine gives now.
            idle = []
            for _ in range(100):
                start = time.perf_counter()
                probe.get("/healthz")
                idle.append(time.perf_counter() - start)
                time.sleep(0.005)
            with ThreadPoolExecutor(len(names)) as pool:
                futures = [pool.submit(logins, n) for n in names]
                threading.Thread(
                    target=lambda: ([f.result() for f in futures], done.set()),
                    daemon=True,
                ).start()
                while not done.is_set():
                    start = time.perf_counter()
                    assert probe.get("/healthz").status_code == 200
                    samples.append(time.perf_counter() - start)
                    time.sleep(0.005)
                statuses = Counter(s for f in futures for s in f.result())
    assert statuses == {401: 3 * len(names)}
    worst = percentile(samples, 99) * 1000
    baseline = percentile(idle, 99) * 1000
    print(  # noqa: T201
        f"healthz p99 {worst:.1f} ms over {len(samples)} samples during logins, "
        f"{baseline:.1f} ms idle"
    )
    # 50 ms on a quiet machine; on a busy one (shared CI) the idle probe of the same
    # run sets the scale (here 5x). A login blocking the event loop costs seconds.
    limit = max(50.0, 5 * baseline)
    assert (
        worst < limit
    ), f"healthz p99 {worst:.1f} ms during logins (idle {baseline:.1f})"
    assert len(samples) >= 100, f"only {len(samples)} samples: logins were too quick"


class _Killer(threading.Thread):
    """Terminates the api's database connections every `KILL_EVERY_S` seconds."""

    def __init__(self, server: PostgresServer, dbname: str, app_name: str) -> None:
        super().__init__(daemon=True)
        self.server, self.dbname, self.app_name = server, dbname, app_name
        self.stop = threading.Event()
        self.rounds: list[int] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            with self.server.connect(self.dbname) as conn:
                while not self.stop.wait(KILL_EVERY_S):
                    killed = conn.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = %s AND application_name = %s"
                        " AND pid <> pg_backend_pid()",
                        (self.dbname, self.app_name),
                    ).fetchone()
                    self.rounds.append(int(killed[0]) if killed else 0)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


@pytest.fixture
def fault_database(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """A migrated, seeded database of this test's own: (name, url)."""
    name = f"ballast_faults_{uuid.uuid4().hex[:10]}"
    url = postgres_server.create_database(name)
    try:
        _seeded(DB(url)).dispose()
        yield name, url
    finally:
        postgres_server.drop_database(name)


def test_200_writes_while_connections_are_killed_every_2s(
    tmp_path: Path,
    postgres_server: PostgresServer,
    fault_database: tuple[str, str],
) -> None:
    dbname, url = fault_database
    # Production mode: what a cluster runs (application_name "prod.api").
    env = {"BALLAST_ENV": "prod", "BALLAST_SECURITY__SECRET_KEY": secrets.token_hex(24)}
    keys = [f"fault-{n:03d}-{uuid.uuid4().hex[:8]}" for n in range(WRITES)]
    seen: Counter[int | str] = Counter()
    final: dict[str, int] = {}
    lock = threading.Lock()

    with api_process(
        url, env=_env(tmp_path, **env), log_path=tmp_path / "api.log"
    ) as base:
        login = httpx.post(
            f"{base}/v1/sessions",
            json={"username": "editor", "password": "editor-demo-pass"},
            timeout=30,
        )
        assert login.status_code == 201, login.text
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        killer = _Killer(postgres_server, dbname, "prod.api")
        killer.start()

        def write(client: httpx.Client, key: str) -> None:
            # Retry like the ui's outbox: same Idempotency-Key until a final answer.
            deadline = time.monotonic() + 60
            while True:
                resp: httpx.Response | None = None
                try:
                    resp = client.post(
                        "/v1/projects",
                        json={"name": key, "description": "fault test"},
                        headers={**headers, "Idempotency-Key": key},
                    )
                    status: int | str = resp.status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                with lock:
                    seen[status] += 1
                if (resp is not None and resp.status_code != 503) or (
                    time.monotonic() > deadline
                ):
                    with lock:
                        final[key] = resp.status_code if resp is not None else 0
                    return
                # Back off a little (a quarter of Retry-After keeps the test short).
                time.sleep(0.25 if resp is not None else 0.1)

        def writer(chunk: list[str]) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                for key in chunk:
                    write(client, key)
                    # Spread the writes over several kill rounds.
                    time.sleep(0.4)

        started = time.monotonic()
        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(writer, [keys[i::WRITERS] for i in range(WRITERS)]))
        elapsed = time.monotonic() - started
        killer.stop.set()
        killer.join(10)

    assert killer.errors == []
    print(  # noqa: T201
        f"{WRITES} writes in {elapsed:.1f} s; kill rounds {killer.rounds}; "
        f"responses {dict(seen)}"
    )
    # The faults really happened: several rounds each killed live connections.
    assert sum(1 for n in killer.rounds if n > 0) >= 3, killer.rounds
    assert seen[500] == 0, dict(seen)
    assert Counter(final.values()) == {201: WRITES}, dict(seen)

    db = DB(url)
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT name, count(*) FROM projects WHERE name LIKE :p"
                    " GROUP BY name"
                ),
                {"p": "fault-%"},
            ).all()
            # The demo projects of the seed have audit rows without a write id.
            audit = conn.execute(
                text(
                    "SELECT write_id, resource_id FROM audit_log"
                    " WHERE resource_type = 'projects' AND write_id IS NOT NULL"
                )
            ).all()
            records: list[Any] = conn.execute(
                text(
                    "SELECT write_id, status_code FROM write_ids"
                    " WHERE operation = 'projects.create'"
                )
            ).all()
            ids = {
                str(r[0])
                for r in conn.execute(
                    text("SELECT id FROM projects WHERE name LIKE :p"), {"p": "fault-%"}
                ).all()
            }
    finally:
        db.dispose()
    # 0 lost, 0 duplicated.
    assert sorted(name for name, _ in rows) == sorted(keys)
    assert all(count == 1 for _, count in rows)
    # Audit rows 1:1 with the writes: one per write id, each naming its project (and
    # no other audited change to projects happened).
    assert sorted(str(w) for w, _ in audit) == sorted(keys)
    assert {str(r) for _, r in audit} == ids
    assert sorted((str(w), int(s)) for w, s in records) == [
        (k, 201) for k in sorted(keys)
    ]
