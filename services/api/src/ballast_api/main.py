"""The state API: `create_app()` and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ballast_api import errors, openapi
from ballast_api.auth.throttle import close_login_throttle
from ballast_api.forms.hot import HotFormSave
from ballast_api.health.router import publish_pool_stats
from ballast_api.health.router import router as health_router
from ballast_api.input_guard import InputGuardMiddleware
from ballast_api.middleware import ClientAddressMiddleware, RequestContextMiddleware
from ballast_api.routes import api_router
from ballast_api.security_headers import SecurityHeadersMiddleware
from ballast_common import uploads
from ballast_common.app import init_app
from ballast_common.cache import reset_cache
from ballast_common.config import AppConfig
from ballast_common.db import DB
from ballast_common.db.migrate import head_revision
from ballast_common.errors import AppError
from ballast_common.security import configure_password_hashing
from ballast_common.storage import open_store
from ballast_common.telemetry import get_logger
from ballast_common.telemetry.metrics import set_build_info
from ballast_common.telemetry.tracing import untraced

API_DESCRIPTION = "Ballast state API: sessions, drafts, forms, projects, audit, events."


def _upload_cors(config: AppConfig) -> None:
    """Let the ui's origins PUT upload parts to the bucket (``s3.cors_origins``); a
    store that is away now only delays direct uploads, never the api's start."""
    if not (config.s3.endpoint_url and config.s3.cors_origins):
        return
    try:
        uploads.configure_cors(
            uploads.s3_store(open_store(config)), config.s3.cors_origins
        )
    except AppError as exc:
        get_logger(__name__).warning("upload_cors_not_set", error=str(exc))


def create_app(config: AppConfig | None = None, db: DB | None = None) -> FastAPI:
    """Build the api. Without arguments it loads the configuration from the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if db is None:
            ctx = init_app("api", config=config)
            app.state.config, app.state.db = ctx.config, ctx.db
        configure_password_hashing(app.state.config.security.password_hash_workers)
        get_logger(__name__).info("api_started", database=repr(app.state.db))
        schema: str | None = await asyncio.to_thread(head_revision)
        set_build_info("api", version, schema or "")
        await asyncio.to_thread(_upload_cors, app.state.config)
        pool_stats = asyncio.create_task(publish_pool_stats(app.state.db))
        # What start-up built lives as long as the app: out of the collector's sight,
        # a collection during a request scans that request's objects, not the whole
        # framework (a tail-latency cost of every request otherwise).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            pool_stats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pool_stats
            await close_login_throttle(app)
            if db is None:
                reset_cache()
                await app.state.db.adispose()

    version = importlib.metadata.version("ballast-api")
    app = FastAPI(
        title="Ballast state API",
        version=version,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # Probes and scrapes make no server span (see telemetry.tracing.untraced).
        telemetry={"exclude": untraced},
    )
    if db is not None:
        app.state.config = config or AppConfig()
        app.state.db = db
    errors.install(app)
    openapi.install(app)
    # Innermost: the form save's hot path, behind every guarantee of the layers below.
    app.add_middleware(HotFormSave)
    # Inside the request context (its errors carry trace ids).
    app.add_middleware(InputGuardMiddleware)
    app.add_middleware(RequestContextMiddleware, service="api")
    # Outside the request context: every response, a 500 too, gets the headers ...
    app.add_middleware(SecurityHeadersMiddleware)
    # ... and outermost, so everything inside sees the client a trusted proxy named.
    app.add_middleware(ClientAddressMiddleware)
    app.include_router(health_router)
    app.include_router(api_router)
    return app
