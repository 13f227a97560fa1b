"""Worker process wiring (Celery signals).

- `worker_process_init` (each pool process, after fork): logging, config and a database
  engine of its own; the parent's pooled connections are forgotten, never shared. Tracing
  (when `OTEL_*` turns it on) is set up here too, never in the parent: the span
  processor's thread and the exporter's connections belong to the process that uses them.
  Task runs join the trace of the request that enqueued them (context in the message
  headers), and their log lines carry the run's trace and span ids.
- `worker_ready` (the main process): the sweeper thread and the /metrics endpoint, and
  the process's cache when `ballast jobs worker` (`init_app`) did not make it (a bare
  `celery worker`): the sweeper's writes bust the other replicas' caches through it.
- `worker_shutdown`: stop the sweeper and the cache's bust listener.

Ref: https://docs.celeryq.dev/en/stable/userguide/signals.html
"""

from __future__ import annotations

from typing import Any

from celery.signals import (
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from ballast_common.cache import current_cache, init_cache, reset_cache
from ballast_common.config import load_config
from ballast_common.db import DB
from ballast_common.telemetry import (
    configure_tracing,
    get_logger,
    instrument,
    instrument_engine,
)
from ballast_jobs import metrics, state
from ballast_jobs.dispatch import WorkerSender
from ballast_jobs.sweeper import Sweeper

log = get_logger(__name__)
_main: dict[str, Any] = {}


def _init_pool_process(**_: Any) -> None:
    sweeper_db: DB | None = _main.get("db")
    state.forget_inherited(sweeper_db)
    init_tracing(state.get_state().db)


def init_tracing(db: DB) -> None:
    """Trace this pool process's task runs, publishes, SQL, Redis and object store."""
    if configure_tracing("worker") is not None:
        instrument("celery", "redis", "botocore", "httpx")
        instrument_engine(db.engine)


def _start_main(sender: Any = None, **_: Any) -> None:
    config = load_config()
    if current_cache() is None:
        init_cache(config)
    db = DB.from_config(config.database, application_name=f"{config.env.value}.sweeper")
    app = sender.app
    sender_ = WorkerSender(app, config)
    refresh_s = config.jobs.metrics_refresh_s

    def on_pass(db: DB) -> None:
        metrics.observe(db)
        metrics.refresh_gauges(db, refresh_s)

    sweeper = Sweeper(db, config, sender_, sender_.terminate, on_pass=on_pass)
    metrics.set_worker(getattr(sender, "hostname", None))
    sweeper.start()
    _main.update(db=db, sweeper=sweeper)
    if config.jobs.metrics_port:
        metrics.serve(config.jobs.metrics_port)
    log.info(
        "worker_ready",
        hostname=getattr(sender, "hostname", None),
        metrics_port=config.jobs.metrics_port,
    )


def _stop_main(**_: Any) -> None:
    sweeper: Sweeper | None = _main.pop("sweeper", None)
    if sweeper is not None:
        sweeper.stop()
    db: DB | None = _main.pop("db", None)
    if db is not None:
        db.dispose()
    reset_cache()


# Connected by call, not as decorators: Celery's signal API is untyped.
worker_process_init.connect(_init_pool_process)
worker_ready.connect(_start_main)
worker_shutdown.connect(_stop_main)
