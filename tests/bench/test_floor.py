"""The api benchmark's floor app (bench/floor.py) does a save's whole write - form
version, audit row, write id - as the api's hot path does, so its latency is a floor of
the same work, not of less."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from ballast_testing.servers import PostgresServer
from bench.floor import floor_process

pytestmark = [pytest.mark.bench, pytest.mark.integration]


@pytest.fixture
def seeded_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"ballast_floor_{secrets.token_hex(6)}"
    url = postgres_server.create_database(name)
    db = DB(url)
    try:
        migrate(db=db)
        run_tx(seed_demo, db=db)
        db.dispose()
        yield url
    finally:
        db.dispose()
        postgres_server.drop_database(name)


async def _rows(url: str, form_id: str) -> tuple[int, int, list[str]]:
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval(
            "SELECT version FROM forms WHERE form_id = $1", form_id
        )
        audits = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE resource_type = 'forms'"
            " AND resource_id = (SELECT id::text FROM forms WHERE form_id = $1)",
            form_id,
        )
        keys = await conn.fetch(
            "SELECT write_id FROM write_ids WHERE operation = 'forms.save'"
            " ORDER BY created_at"
        )
        return int(version), int(audits), [r["write_id"] for r in keys]
    finally:
        await conn.close()


def test_the_floor_saves_a_version_an_audit_row_and_a_write_id(seeded_url: str) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    with floor_process(seeded_url) as base, httpx.Client(base_url=base) as client:
        assert client.get("/healthz").status_code == 200
        created = client.put(
            "/v1/forms/floor.a",
            json={"data": {"n": 1}},
            headers={"Idempotency-Key": first},
        )
        updated = client.put(
            "/v1/forms/floor.a",
            json={"data": {"n": 2}},
            headers={"Idempotency-Key": second},
        )
        # A replayed write id changes nothing; the floor leaves it to the api's path.
        replay = client.put(
            "/v1/forms/floor.a",
            json={"data": {"n": 3}},
            headers={"Idempotency-Key": first},
        )
        missing = client.get("/v1/forms/floor.a")
    assert (created.status_code, updated.status_code) == (201, 200)
    assert created.json()["version"] == 1
    assert updated.json()["data"] == {"n": 2}
    assert updated.json()["version"] == 2
    assert replay.status_code == 409
    assert missing.status_code == 404
    assert asyncio.run(_rows(seeded_url, "floor.a")) == (2, 2, [first, second])


def test_the_floor_refuses_to_start_without_its_user(seeded_url: str) -> None:
    # It exits at start-up; the timeout only bounds a start-up that hangs (a loaded CI
    # machine took over 5 s to get that far).
    with (
        pytest.raises(RuntimeError, match="exited"),
        floor_process(seeded_url, user="nobody", timeout=60),
    ):
        pass


def test_the_floor_serves_concurrent_saves_on_several_workers(seeded_url: str) -> None:
    """saves_per_s_16c has a floor too: 16 clients at once on 2 workers, each save on a
    connection of its own (one asyncpg connection cannot run two statements)."""

    async def clients(base: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def saves(c: int) -> list[int]:
                out = []
                for n in range(5):
                    resp = await client.put(
                        f"/v1/forms/floor.c{c}",
                        json={"data": {"n": n}},
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                    out.append(resp.status_code)
                return out

            return [s for c in await asyncio.gather(*map(saves, range(16))) for s in c]

    with floor_process(seeded_url, workers=2) as base:
        statuses = asyncio.run(clients(base))
    assert statuses.count(201) == 16
    assert statuses.count(200) == 16 * 4
    for c in (0, 15):
        version, audits, _ = asyncio.run(_rows(seeded_url, f"floor.c{c}"))
        assert (version, audits) == (5, 5)
