from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ballast_common.cache import current_cache
from ballast_common.db import DB
from ballast_common.telemetry import set_db_pool_stats

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ready-", delete=True) as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
        return True
    except OSError:
        return False


async def _redis_ok(url: str) -> bool:
    client = aioredis.from_url(
        url, socket_timeout=1, socket_connect_timeout=1, protocol=2
    )
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def _cache_report() -> dict[str, Any]:
    """The cache's layers. Its Redis being down degrades it (L1 and computing go on),
    it does not make the process unready."""
    cache = current_cache()
    if cache is None:
        return {"status": "off"}
    return await asyncio.to_thread(cache.health)


@router.get("/readyz", responses={503: {"description": "A dependency is not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: database, Redis (when configured) and the writable data/object-store
    paths; the cache's layers are reported (``degraded`` without its Redis) but do not
    decide readiness."""
    config = request.app.state.config
    db = request.app.state.db
    checks: dict[str, Any] = {}
    checks["database"] = await asyncio.wait_for(db.ahealth_check(), timeout=5)
    if config.redis_url:
        checks["redis"] = await _redis_ok(config.redis_url)
    checks["data_dir"] = await asyncio.to_thread(_writable, Path(config.paths.data_dir))
    if config.s3.endpoint_url is None:
        checks["object_store"] = await asyncio.to_thread(
            _writable, Path(config.paths.data_dir) / "objects"
        )
    ok = all(checks.values())
    cache = await _cache_report()
    status = "unavailable" if not ok else cache["status"]
    return JSONResponse(
        {
            "status": "ok" if status == "off" else status,
            "checks": checks,
            "cache": cache,
        },
        status_code=200 if ok else 503,
    )


# The pool gauges are refreshed this often (in seconds): /metrics is served by another
# thread (or, with several workers, the parent process), which cannot see the pool.
POOL_STATS_EVERY_S = 5.0


async def publish_pool_stats(db: DB, every: float = POOL_STATS_EVERY_S) -> None:
    """Publish the connection pools' state now and every ``every`` seconds (a lifespan
    task; cancelled when the app stops). Reading the pools is in memory and cheap."""
    while True:
        set_db_pool_stats("api", **db.pool_stats())
        await asyncio.sleep(every)


@router.get("/metrics", include_in_schema=False, status_code=404)
async def metrics() -> Response:
    """Not here: metrics are served on the metrics port (api.metrics_port), which the
    Ingress never routes."""
    return Response(
        "not found: /metrics is served on the metrics port\n",
        status_code=404,
        media_type="text/plain",
    )
