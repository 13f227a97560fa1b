"""State API benchmark: save_form through the real HTTP api on PostgreSQL.

Writes bench/results/api.json with
- save_p50_ms_1c, save_p99_ms_1c: PUT /v1/forms/{id} (idempotent, audited, versioned) at 1 client,
  sent by the lean keep-alive client below (`_Http`), as the raw figure is by asyncpg: the
  ratio compares what the server spends, not what a Python HTTP client adds;
- save_p50_ms_1c_httpx, save_p99_ms_1c_httpx: the same through httpx, the client the ui
  uses (and the one the runs before this client measured with): about 0.9 ms more a save here;
- save_p50_ms_tracing_off: the same with tracing explicitly off (OTEL_SDK_DISABLED=true, an
  OTLP endpoint set all the same), same run: what tracing costs a deployment that has it off
  (compare with save_p50_ms_1c of a run before tracing existed; target: within 3 %);
- raw_p50_ms_1c, raw_p99_ms_1c: a raw asyncpg transaction (BEGIN, single-row INSERT,
  COMMIT) on the same server, measured in blocks alternating with the saves';
- ratio_p99_1c = save_p99_ms_1c / raw_p99_ms_1c (target <= 2);
- floor_p50_ms_1c, floor_p99_ms_1c: the same save statement behind the leanest ASGI app
  uvicorn serves (`bench/floor.py`: no middleware, auth, model or pool), in the same
  alternating blocks: what HTTP on this machine plus the statement cost at least;
  ratio_floor_p99_1c = floor_p99_ms_1c / raw_p99_ms_1c (no api can go below it here) and
  api_over_floor_p99_ms = save_p99_ms_1c - floor_p99_ms_1c (what the api's own code and
  framework add);
- saves_per_s_16c: saves per second with 16 concurrent clients on the production worker
  count (2 api workers: the chart's 2 replicas x 1 worker; target >= 2000). The clients are
  keep-alive HTTP/1.1 connections written by hand (`_Http`), not httpx: they share the
  machine's two cores with the api, and httpx's own CPU cost capped even GET /healthz at
  ~1,600/s here;
- floor_saves_per_s_16c: the same 16 clients saving to the floor app (`bench/floor.py`,
  on the same 2 workers, a connection per concurrent save), in blocks alternating with
  the api's (two each, DURATION_16C_S in all): what this machine's HTTP stack and the
  save statement reach at all; save_share_of_floor_16c = saves_per_s_16c / it (what the
  api keeps of it with its guarantees);
- healthz_per_s_16c: the same 16 clients on the same 2 workers asking GET /healthz (no
  database, no auth), same run: what this machine's HTTP stack and load generator reach
  at all, the ceiling of any endpoint; save_share_of_http_ceiling = saves_per_s_16c / it;
- raw_tx_per_s_16c: 16 asyncpg connections each doing single-row INSERTs (autocommit: one
  round trip and one commit each, as a save on the hot path), same run: the database's
  own ceiling on this machine;
- draft_batch_p50_ms / draft_batch_p99_ms: PUT /v1/drafts carrying 20 widget values
  (one transaction) at 1 client;
- save_p99_ms_at_1e4_audit_rows / save_p99_ms_at_1e6_audit_rows: the 1-client save p99
  with the audit table (and the write-id table) seeded to 10^4 and to 10^6 rows
  (generate_series), two databases on the same server, each behind its own api, saved
  to in alternating blocks; audit_growth_ratio_p99 = the second / the first (target
  <= 1.1): a save must not slow down as the trail grows.
The server runs with PostgreSQL's default durability (fsync on, synchronous_commit on).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from ballast_testing.servers import LocalPostgres
from bench.common import api_process, percentile, write_result
from bench.floor import floor_process

WARMUP = 200
SAMPLES_1C = 2000
SAMPLES_DRAFTS = 1000
SAMPLES_AUDIT = 1500
DRAFT_BATCH = 20
DURATION_16C_S = 10.0
CLIENTS = 16
# 1-client saves and raw transactions alternate in blocks of this many.
BLOCK_1C = 100
# Tracing switched off by the SDK's own switch although an endpoint is configured.
TRACING_OFF = {
    "OTEL_SDK_DISABLED": "true",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
}


RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_raw"
    " (id bigserial PRIMARY KEY, payload jsonb, at timestamptz)"
)
RAW_INSERT = "INSERT INTO bench_raw (payload, at) VALUES ($1, now())"


def _save_request(form: str) -> Any:
    """(method, path, body) of the i-th 1-client save: a new version each time."""

    def save(i: int) -> tuple[str, str, bytes]:
        body = {"data": {"name": f"bench {i}", "n": i, "tags": ["a", "b"]}}
        return "PUT", f"/v1/forms/{form}", json.dumps(body).encode()

    return save


async def _save_and_raw_latencies(
    dsn: str, base: str, token: str, n: int, floor: str, form: str = "bench.1c"
) -> tuple[list[float], list[float], list[float]]:
    """`n` 1-client saves to the api at `base`, `n` to the floor app at `floor` and
    `n` raw insert transactions, in alternating blocks (`_alternating`)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(RAW_TABLE)
        stmt = await conn.prepare(RAW_INSERT)

        async def raw(i: int) -> float:
            t0 = time.perf_counter()
            async with conn.transaction():
                await stmt.fetch(f'{{"n": {i}}}')
            return (time.perf_counter() - t0) * 1000

        request = _save_request(form)
        lean = _save_request(f"{form}.floor")
        async with _Http(base, token) as http, _Http(floor, "-") as bare:

            async def save(i: int) -> float:
                return await _send(http, request(i), (200, 201))

            async def floor_save(i: int) -> float:
                return await _send(bare, lean(i), (200, 201))

            saves, floors, raws = await _alternating((save, floor_save, raw), n)
        return saves, floors, raws
    finally:
        await conn.close()


def _login(base: str) -> str:
    resp = httpx.post(
        f"{base}/v1/sessions",
        json={"username": "editor", "password": "editor-demo-pass"},
    )
    resp.raise_for_status()
    return str(resp.json()["token"])


def _save_latencies_httpx(
    base: str, token: str, n: int, form: str = "bench.1c.httpx"
) -> list[float]:
    """The 1-client save through httpx, as the ui's client sends it (continuity with the
    runs before the lean client: httpx itself costs about 0.9 ms a request here)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = _save_request(form)
    out = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(n + WARMUP):
            method, path, body = request(i)
            t0 = time.perf_counter()
            resp = client.request(
                method,
                path,
                content=body,
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"save failed: {resp.status_code} {resp.text}")
            if i >= WARMUP:
                out.append(elapsed)
    return out


async def _send(
    http: _Http, request: tuple[str, str, bytes], ok: tuple[int, ...]
) -> float:
    """One request with a fresh Idempotency-Key; its latency in ms."""
    method, path, body = request
    key = f"Idempotency-Key: {os.urandom(16).hex()}\r\n"
    t0 = time.perf_counter()
    status, answer = await http.request(method, path, body, key)
    elapsed = (time.perf_counter() - t0) * 1000
    if status not in ok:
        raise RuntimeError(f"{method} {path} failed: {status} {answer[:200]!r}")
    return elapsed


Timed = Callable[[int], Awaitable[float]]


async def _alternating(series: Sequence[Timed], n: int) -> list[list[float]]:
    """`n` latencies (ms) of each of `series` (`run(i)` times its i-th run), after
    WARMUP untimed runs each, in alternating blocks of BLOCK_1C: the machine is shared,
    and a burst of someone else's work then lands on every series alike instead of on
    whichever ran at the time."""
    for i in range(WARMUP):
        for run in series:
            await run(i)
    out: list[list[float]] = [[] for _ in series]
    end = WARMUP + n
    for start in range(WARMUP, end, BLOCK_1C):
        for run, latencies in zip(series, out, strict=True):
            for i in range(start, min(start + BLOCK_1C, end)):
                latencies.append(await run(i))
    return out


async def _timed(
    base: str, token: str, n: int, request: Any, ok: tuple[int, ...]
) -> list[float]:
    """`n` timed requests (after WARMUP untimed ones) on one keep-alive connection;
    `request(i)` gives (method, path, body) of the i-th."""
    async with _Http(base, token) as http:

        async def one(i: int) -> float:
            return await _send(http, request(i), ok)

        (latencies,) = await _alternating((one,), n)
    return latencies


async def _paired_save_latencies(
    first: tuple[str, str], second: tuple[str, str], n: int, form: str
) -> tuple[list[float], list[float]]:
    """`n` 1-client saves to each of two apis ((base URL, token) each), in alternating
    blocks (`_alternating`): a comparison of the two that the machine's noise hits
    alike."""
    request = _save_request(form)
    async with _Http(*first) as one, _Http(*second) as two:

        async def to_one(i: int) -> float:
            return await _send(one, request(i), (200, 201))

        async def to_two(i: int) -> float:
            return await _send(two, request(i), (200, 201))

        at_one, at_two = await _alternating((to_one, to_two), n)
    return at_one, at_two


def _save_latencies(
    base: str, token: str, n: int, form: str = "bench.1c"
) -> list[float]:
    """PUT /v1/forms/{form} at 1 client, each save a new version of the same record."""
    return asyncio.run(_timed(base, token, n, _save_request(form), (200, 201)))


def _draft_batch_latencies(base: str, token: str, n: int) -> list[float]:
    """PUT /v1/drafts with DRAFT_BATCH values (every value changes each time)."""

    def batch(i: int) -> tuple[str, str, bytes]:
        items = [
            {"form_id": "bench.drafts", "field": f"f{k}", "value": f"v{i}", "seq": i}
            for k in range(DRAFT_BATCH)
        ]
        return "PUT", "/v1/drafts", json.dumps({"items": items}).encode()

    return asyncio.run(_timed(base, token, n, batch, (200,)))


async def _grow_audit(dsn: str, rows: int) -> None:
    """Fill audit_log and write_ids up to `rows` rows each, in SQL (generate_series)."""
    conn = await asyncpg.connect(dsn)
    try:
        for table, insert in (
            (
                "audit_log",
                "INSERT INTO audit_log (user_id, action, resource_type, resource_id,"
                ' old_values, new_values, "timestamp", write_id)'
                " SELECT NULL, 'update', 'forms', md5(g::text),"
                " jsonb_build_object('n', g), jsonb_build_object('n', g + 1),"
                " now() - make_interval(secs => g), 'seed-' || g"
                " FROM generate_series(1, $1::int) AS g",
            ),
            (
                "write_ids",
                "INSERT INTO write_ids (write_id, user_id, operation, fingerprint,"
                " status_code, response, created_at)"
                " SELECT 'seed-' || g || '-' || md5(random()::text), NULL, 'forms.save',"
                " md5(g::text), 200, '{}'::jsonb, now() - make_interval(secs => g)"
                " FROM generate_series(1, $1::int) AS g",
            ),
        ):
            have = await conn.fetchval(f"SELECT count(*) FROM {table}")
            if rows > have:
                await conn.execute(insert, rows - have)
            await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()


class _Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, as lean as a load generator can be.

    The load processes share the api's two cores: every microsecond a client spends on
    a request is taken from the server measured. So a request is one `write` of bytes
    built from a constant head, and the answer is read by the protocol itself (one
    `data_received` per response, usually) instead of a stream reader's line-by-line
    coroutines: this client spends about a third of the CPU per request that an
    asyncio-streams client did here (and httpx several times more).
    """

    def __init__(self, base: str, token: str) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.head = f"Host: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._lost: Exception | None = None

    async def __aenter__(self) -> _Http:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionError("the server closed the connection")
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(self._lost)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answer is None:
            return
        head = bytes(self._buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        stop = head.find(b"\r\n", at + 2)
        length = 0 if at < 0 else int(head[at + 17 : stop if stop > 0 else len(head)])
        if len(self._buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        self._answer.set_result((status, body))

    async def request(
        self, method: str, path: str, body: bytes = b"", extra: str = ""
    ) -> tuple[int, bytes]:
        if self.transport is None:
            raise RuntimeError("the connection is not open (use `async with`)")
        if self._lost is not None:
            raise self._lost
        kind = "Content-Type: application/json\r\n" if body else ""
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(
            f"{method} {path} HTTP/1.1\r\n{self.head}{extra}{kind}"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        return await self._answer


async def _load_worker(
    base: str, token: str, form: str | None, deadline: float, counts: list[int]
) -> None:
    """Saves to `form` until the deadline (with no form: GET /healthz)."""
    async with _Http(base, token) as http:
        i = 0
        while time.perf_counter() < deadline:
            if form is None:
                status, body = await http.request("GET", "/healthz")
            else:
                status, body = await http.request(
                    "PUT",
                    f"/v1/forms/{form}",
                    b'{"data": {"n": %d}}' % i,
                    f"Idempotency-Key: {os.urandom(16).hex()}\r\n",
                )
            if status not in (200, 201):
                raise RuntimeError(f"request failed: {status} {body[:200]!r}")
            i += 1
        counts.append(i)


def _load_process(
    base: str,
    token: str,
    offset: int,
    clients: int,
    duration: float,
    queue: Any,
    saves: bool = True,
) -> None:
    async def main() -> int:
        counts: list[int] = []
        deadline = time.perf_counter() + duration
        await asyncio.gather(
            *(
                _load_worker(
                    base,
                    token,
                    f"bench.16c.{offset + c}" if saves else None,
                    deadline,
                    counts,
                )
                for c in range(clients)
            )
        )
        return sum(counts)

    queue.put(asyncio.run(main()))


async def _raw_throughput(dsn: str, clients: int, duration: float) -> float:
    """Raw insert transactions/s on `clients` connections (the database's ceiling)."""
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    deadline = time.perf_counter() + duration

    async def one(conn: asyncpg.Connection) -> int:
        stmt = await conn.prepare(RAW_INSERT)
        n = 0
        while time.perf_counter() < deadline:
            await stmt.fetch('{"n": 1}')
            n += 1
        return n

    try:
        return sum(await asyncio.gather(*(one(c) for c in conns))) / duration
    finally:
        for conn in conns:
            await conn.close()


def _throughput(
    base: str,
    token: str,
    clients: int,
    duration: float,
    procs: int = 2,
    saves: bool = True,
) -> float:
    """Saves/s (or, with `saves` false, GET /healthz/s) with `clients` concurrent
    clients spread over `procs` load processes."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per = clients // procs
    workers = [
        ctx.Process(
            target=_load_process,
            args=(base, token, p * per, per, duration, queue, saves),
        )
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    total = sum(queue.get(timeout=duration + 120) for _ in workers)
    for w in workers:
        w.join()
    return float(total) / duration


def _database(pg: LocalPostgres, name: str) -> str:
    """A new database on `pg`, migrated and seeded; its URL."""
    url = pg.create_database(name)
    db = DB(url)
    migrate(db=db)
    run_tx(seed_demo, db=db)
    db.dispose()
    return url


def run() -> dict[str, Any]:
    with LocalPostgres.throwaway({"fsync": "on", "max_connections": "200"}) as pg:
        url = _database(pg, "ballast_bench")
        with api_process(url) as base, floor_process(url) as floor:
            token = _login(base)
            saves, floors, raw = asyncio.run(
                _save_and_raw_latencies(url, base, token, SAMPLES_1C, floor)
            )
            saves_httpx = _save_latencies_httpx(base, token, SAMPLES_1C)
            drafts = _draft_batch_latencies(base, token, SAMPLES_DRAFTS)
        # The audit trail at 10^4 rows in this database and at 10^6 in a twin, each
        # behind its own api, saved to in alternating blocks (same time, same noise).
        big = _database(pg, "ballast_bench_audit")
        asyncio.run(_grow_audit(url, 10_000))
        asyncio.run(_grow_audit(big, 1_000_000))
        with api_process(url) as small_base, api_process(big) as big_base:
            at_1e4, at_1e6 = asyncio.run(
                _paired_save_latencies(
                    (small_base, _login(small_base)),
                    (big_base, _login(big_base)),
                    SAMPLES_AUDIT,
                    "bench.audit",
                )
            )
        with api_process(url, env=TRACING_OFF) as base:
            token = _login(base)
            saves_off = _save_latencies(base, token, SAMPLES_1C)
        with api_process(url, workers=2) as base, floor_process(url, workers=2) as lean:
            token = _login(base)
            _throughput(base, token, CLIENTS, 2.0)  # warm-up: connections, caches
            _throughput(lean, "-", CLIENTS, 2.0)
            per_s = floor_per_s = 0.0
            for _ in range(2):
                per_s += _throughput(base, token, CLIENTS, DURATION_16C_S / 2) / 2
                floor_per_s += _throughput(lean, "-", CLIENTS, DURATION_16C_S / 2) / 2
            healthz_per_s = _throughput(
                base, token, CLIENTS, DURATION_16C_S, saves=False
            )
        raw_per_s = asyncio.run(_raw_throughput(url, CLIENTS, DURATION_16C_S))
    save_p99 = percentile(saves, 99)
    raw_p99 = percentile(raw, 99)
    floor_p99 = percentile(floors, 99)
    p99_1e4, p99_1e6 = percentile(at_1e4, 99), percentile(at_1e6, 99)
    result = {
        "draft_batch_p50_ms": round(percentile(drafts, 50), 3),
        "draft_batch_p99_ms": round(percentile(drafts, 99), 3),
        "draft_batch_values": DRAFT_BATCH,
        "save_p99_ms_at_1e4_audit_rows": round(p99_1e4, 3),
        "save_p99_ms_at_1e6_audit_rows": round(p99_1e6, 3),
        "audit_growth_ratio_p99": round(p99_1e6 / p99_1e4, 3),
        "save_p50_ms_1c": round(percentile(saves, 50), 3),
        "save_p99_ms_1c": round(save_p99, 3),
        "save_p50_ms_1c_httpx": round(percentile(saves_httpx, 50), 3),
        "save_p99_ms_1c_httpx": round(percentile(saves_httpx, 99), 3),
        "save_p50_ms_tracing_off": round(percentile(saves_off, 50), 3),
        "raw_p50_ms_1c": round(percentile(raw, 50), 3),
        "raw_p99_ms_1c": round(raw_p99, 3),
        "ratio_p99_1c": round(save_p99 / raw_p99, 3),
        "floor_p50_ms_1c": round(percentile(floors, 50), 3),
        "floor_p99_ms_1c": round(floor_p99, 3),
        "ratio_floor_p99_1c": round(floor_p99 / raw_p99, 3),
        "api_over_floor_p99_ms": round(save_p99 - floor_p99, 3),
        "saves_per_s_16c": round(per_s, 1),
        "floor_saves_per_s_16c": round(floor_per_s, 1),
        "save_share_of_floor_16c": round(per_s / floor_per_s, 3),
        "healthz_per_s_16c": round(healthz_per_s, 1),
        "save_share_of_http_ceiling": round(per_s / healthz_per_s, 3),
        "raw_tx_per_s_16c": round(raw_per_s, 1),
        "samples_1c": len(saves),
        "clients_16c": CLIENTS,
        "duration_16c_s": DURATION_16C_S,
        "api_workers_16c": 2,
    }
    write_result("api", result)
    return result


if __name__ == "__main__":
    print(run())
