"""State API benchmark: save_form through the real HTTP api on PostgreSQL.

Writes bench/results/api.json with
- save_p50_ms_1c, save_p99_ms_1c: PUT /v1/forms/{id} (idempotent, audited, versioned) at 1 client;
- save_p50_ms_tracing_off: the same with tracing explicitly off (OTEL_SDK_DISABLED=true, an
  OTLP endpoint set all the same), same run: what tracing costs a deployment that has it off
  (compare with save_p50_ms_1c of a run before tracing existed; target: within 3 %);
- raw_p99_ms_1c: a raw asyncpg single-row INSERT + COMMIT on the same server, same run;
- ratio_p99_1c = save_p99_ms_1c / raw_p99_ms_1c (target <= 3);
- saves_per_s_16c: saves per second with 16 concurrent clients (target >= 1000).
The server runs with PostgreSQL's default durability (fsync on, synchronous_commit on).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from typing import Any

import asyncpg
import httpx

from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from ballast_testing.servers import LocalPostgres
from bench.common import api_process, percentile, write_result

WARMUP = 200
SAMPLES_1C = 2000
DURATION_16C_S = 10.0
CLIENTS = 16
# Tracing switched off by the SDK's own switch although an endpoint is configured.
TRACING_OFF = {
    "OTEL_SDK_DISABLED": "true",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
}


async def _raw_insert_latencies(dsn: str, n: int) -> list[float]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, payload jsonb, at timestamptz)"
        )
        stmt = await conn.prepare(
            "INSERT INTO bench_raw (payload, at) VALUES ($1, now())"
        )
        out = []
        for i in range(n + WARMUP):
            t0 = time.perf_counter()
            async with conn.transaction():
                await stmt.fetch(f'{{"n": {i}}}')
            if i >= WARMUP:
                out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        await conn.close()


def _login(base: str) -> str:
    resp = httpx.post(
        f"{base}/v1/sessions",
        json={"username": "editor", "password": "editor-demo-pass"},
    )
    resp.raise_for_status()
    return str(resp.json()["token"])


def _save_latencies(base: str, token: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(n + WARMUP):
            body = {"data": {"name": f"bench {i}", "n": i, "tags": ["a", "b"]}}
            t0 = time.perf_counter()
            resp = client.put(
                "/v1/forms/bench.1c",
                json=body,
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"save failed: {resp.status_code} {resp.text}")
            if i >= WARMUP:
                out.append(elapsed)
    return out


async def _load_worker(
    base: str, token: str, form: str, deadline: float, counts: list[int]
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        i = 0
        while time.perf_counter() < deadline:
            resp = await client.put(
                f"/v1/forms/{form}",
                json={"data": {"n": i}},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"save failed: {resp.status_code} {resp.text}")
            i += 1
        counts.append(i)


def _load_process(
    base: str, token: str, offset: int, clients: int, duration: float, queue: Any
) -> None:
    async def main() -> int:
        counts: list[int] = []
        deadline = time.perf_counter() + duration
        await asyncio.gather(
            *(
                _load_worker(base, token, f"bench.16c.{offset + c}", deadline, counts)
                for c in range(clients)
            )
        )
        return sum(counts)

    queue.put(asyncio.run(main()))


def _throughput(
    base: str, token: str, clients: int, duration: float, procs: int = 2
) -> float:
    """Saves/s with `clients` concurrent clients spread over `procs` load processes."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per = clients // procs
    workers = [
        ctx.Process(
            target=_load_process, args=(base, token, p * per, per, duration, queue)
        )
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    total = sum(queue.get(timeout=duration + 120) for _ in workers)
    for w in workers:
        w.join()
    return total / duration


def run() -> dict[str, Any]:
    with LocalPostgres.throwaway({"fsync": "on", "max_connections": "200"}) as pg:
        url = pg.create_database("ballast_bench")
        db = DB(url)
        migrate(db=db)
        run_tx(seed_demo, db=db)
        db.dispose()
        raw = asyncio.run(_raw_insert_latencies(url, SAMPLES_1C))
        with api_process(url) as base:
            token = _login(base)
            saves = _save_latencies(base, token, SAMPLES_1C)
        with api_process(url, env=TRACING_OFF) as base:
            token = _login(base)
            saves_off = _save_latencies(base, token, SAMPLES_1C)
        with api_process(url, workers=2) as base:
            token = _login(base)
            _throughput(base, token, CLIENTS, 2.0)  # warm-up: connections, caches
            per_s = _throughput(base, token, CLIENTS, DURATION_16C_S)
    save_p99 = percentile(saves, 99)
    raw_p99 = percentile(raw, 99)
    result = {
        "save_p50_ms_1c": round(percentile(saves, 50), 3),
        "save_p99_ms_1c": round(save_p99, 3),
        "save_p50_ms_tracing_off": round(percentile(saves_off, 50), 3),
        "raw_p50_ms_1c": round(percentile(raw, 50), 3),
        "raw_p99_ms_1c": round(raw_p99, 3),
        "ratio_p99_1c": round(save_p99 / raw_p99, 3),
        "saves_per_s_16c": round(per_s, 1),
        "samples_1c": len(saves),
        "clients_16c": CLIENTS,
        "duration_16c_s": DURATION_16C_S,
        "api_workers_16c": 2,
    }
    write_result("api", result)
    return result


if __name__ == "__main__":
    print(run())
