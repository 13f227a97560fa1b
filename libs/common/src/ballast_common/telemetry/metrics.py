"""Shared Prometheus metrics.

All metrics live in the default registry (``prometheus_client.REGISTRY``), which
``prometheus_client.make_asgi_app()`` / ``generate_latest()`` expose on
``/metrics``. Registering the same name twice in one registry raises
``ValueError: Duplicated timeseries``, so every metric here is created once, lazily,
and cached at module level; call the accessors, never the constructors.
In multi-process servers (the api with several uvicorn workers) ``PROMETHEUS_MULTIPROC_DIR``
names a directory every process writes its values to, and `exposition()` sums them, so a
scrape reports the totals of every process whichever one answers it
(`prepare_multiprocess_dir` sets it up before the workers start).
Ref: https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Final, TypeVar, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

# 1 ms .. 10 s: interaction budgets are 50 ms, slow exports take seconds.
HTTP_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
DB_POOL_STATES: Final[tuple[str, ...]] = ("checked_out", "idle", "overflow", "size")

_lock = threading.Lock()

_M = TypeVar("_M", bound=MetricWrapperBase)


def get_or_create(name: str, factory: Callable[[], _M]) -> _M:
    """Return the metric registered under ``name``, creating it with ``factory``.

    Survives module reloads and several modules asking for one metric, where a
    second constructor call would raise ``Duplicated timeseries``.

    Args:
        name: The full metric name as passed to the constructor.
        factory: Builds the metric in the default registry.

    Returns:
        The registered metric.
    """
    with _lock:
        # prometheus_client has no public lookup; this mapping is what its own
        # duplicate check consults.
        existing = REGISTRY._names_to_collectors.get(name)
        if existing is not None:
            return cast(_M, existing)
        return factory()


@dataclass(frozen=True)
class HttpMetrics:
    """The HTTP server metrics pair.

    Attributes:
        requests: ``ballast_http_requests_total{service,method,route,status}``.
        duration: ``ballast_http_request_duration_seconds{service,method,route}``.
    """

    requests: Counter
    duration: Histogram


_http_metrics: HttpMetrics | None = None


def http_metrics() -> HttpMetrics:
    """Return the HTTP request counter and duration histogram (created once).

    Use the route *template* (``/projects/{id}``), never the raw path, as the
    ``route`` label: raw paths make label cardinality unbounded.

    Returns:
        The process-wide :class:`HttpMetrics`.
    """
    global _http_metrics
    if _http_metrics is None:
        _http_metrics = HttpMetrics(
            requests=get_or_create(
                "ballast_http_requests_total",
                lambda: Counter(
                    "ballast_http_requests_total",
                    "HTTP requests handled.",
                    ("service", "method", "route", "status"),
                    registry=REGISTRY,
                ),
            ),
            duration=get_or_create(
                "ballast_http_request_duration_seconds",
                lambda: Histogram(
                    "ballast_http_request_duration_seconds",
                    "HTTP request duration (in seconds).",
                    ("service", "method", "route"),
                    buckets=HTTP_DURATION_BUCKETS,
                    registry=REGISTRY,
                ),
            ),
        )
    return _http_metrics


def db_pool_gauge() -> Gauge:
    """Return ``ballast_db_pool_connections{service,state}`` (created once).

    ``state`` is one of :data:`DB_POOL_STATES`; see :func:`set_db_pool_stats`.

    Returns:
        The process-wide gauge.
    """
    return get_or_create(
        "ballast_db_pool_connections",
        lambda: Gauge(
            "ballast_db_pool_connections",
            "Database connection pool connections by state.",
            ("service", "state"),
            registry=REGISTRY,
        ),
    )


def set_db_pool_stats(
    service: str, *, checked_out: int, idle: int, overflow: int, size: int
) -> None:
    """Publish one snapshot of a connection pool's state.

    Args:
        service: Service label.
        checked_out: Connections in use (SQLAlchemy ``pool.checkedout()``).
        idle: Connections idle in the pool (``pool.checkedin()``).
        overflow: Connections above ``pool_size`` (``pool.overflow()``).
        size: Configured pool size (``pool.size()``).
    """
    gauge = db_pool_gauge()
    values = {
        "checked_out": checked_out,
        "idle": idle,
        "overflow": overflow,
        "size": size,
    }
    for state, value in values.items():
        gauge.labels(service=service, state=state).set(value)


def set_build_info(service: str, version: str, schema: str = "") -> None:
    """Publish ``ballast_build_info{service,version,schema} 1`` for this process.

    The dashboards' deployment annotations read it: a new ``version`` is a release, a new
    ``schema`` (the migration head this code runs against) a migration; the scrape adds
    the pod's ``color``. In multi-process mode the live processes' maximum is exported.

    Args:
        service: ``api``, ``ui``, ``worker``.
        version: The package version.
        schema: The Alembic head revision the code expects ("" for the ui, which has no
            database).
    """
    gauge = get_or_create(
        "ballast_build_info",
        lambda: Gauge(
            "ballast_build_info",
            "Version and schema revision of this process (always 1).",
            ("service", "version", "schema"),
            registry=REGISTRY,
            multiprocess_mode="livemax",
        ),
    )
    gauge.labels(service=service, version=version, schema=schema).set(1)


# prometheus_client's own switch for multi-process mode (read when it is imported).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(processes: int) -> Path | None:
    """Before a server starts ``processes`` worker processes: with more than one, make
    (or empty) the directory they share their metric values through and name it in
    the environment they inherit.

    An operator's directory (the variable already set, e.g. a pod's emptyDir) is
    emptied: values of an earlier run would be counted again. Otherwise a temporary
    one is made.

    Returns:
        The temporary directory made (the caller removes it when the server is
        done), or None.
    """
    if processes <= 1:
        return None
    given = os.environ.get(MULTIPROC_ENV)  # noqa: TID251 - prometheus_client's setting
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    made = Path(tempfile.mkdtemp(prefix="ballast-metrics-"))
    os.environ[MULTIPROC_ENV] = str(made)  # noqa: TID251 - inherited by the workers
    return made


def exposition() -> tuple[bytes, str]:
    """The Prometheus text of this process, or of every process sharing a
    multi-process directory; and its content type."""
    if os.environ.get(MULTIPROC_ENV):  # noqa: TID251 - prometheus_client's setting
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds: no access lines


def _metrics_app(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in (
        "GET",
        "HEAD",
    ):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: GET /metrics\n"]
    body, content_type = exposition()
    start_response(
        "200 OK",
        [("Content-Type", content_type), ("Content-Length", str(len(body)))],
    )
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def serve_metrics(port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve ``GET /metrics`` (`exposition`: this process, or every process of a
    multi-process directory) on ``host:port`` from a daemon thread; anything else 404.

    The ui and the api serve their metrics here, apart from the port the Ingress
    routes, so /metrics is never reachable from outside the cluster.

    Raises:
        OSError: The port cannot be bound (in use, not permitted).

    Returns:
        The running server (``shutdown()`` stops it).
    """
    server = make_server(
        host, port, _metrics_app, _ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(
        target=server.serve_forever, name="ballast-metrics", daemon=True
    ).start()
    return server
