"""OpenTelemetry tracing: one provider per process, configured by the standard ``OTEL_*``.

Off unless an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not ``true``; the
embedded default configures none. Off, nothing is instrumented, so tracing costs
nothing, but every unit of work still gets W3C-valid trace and span ids (the SDK's id
generator; `ids_for_request`) for logs, error responses and audit rows.

On, the SDK reads the rest itself: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG`` and the ``OTEL_EXPORTER_OTLP_*``
settings of the OTLP/HTTP exporter (protocol ``http/protobuf``, port 4318).
Ref: https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/

Instrumentations are applied per process by the entry points (`instrument`); the
server ones (SQLAlchemy, Celery, redis, botocore) are imported only there, so the UI
image needs the SDK, the exporter and the httpx instrumentation only. The api's server
spans are FastAPI's own (its native OpenTelemetry support follows the global provider
set here: one span per request named by route, with dependency and endpoint spans).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager, nullcontext
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    format_span_id,
    format_trace_id,
)
from opentelemetry.util._once import Once
from opentelemetry.util.http import ExcludeList, parse_excluded_urls

from ballast_common.telemetry.pii import mask_value

TRACER_NAME = "ballast"

_ids = RandomIdGenerator()
_lock = threading.Lock()
_state: dict[str, Any] = {
    "provider": None,
    "service": None,
    "instrumented": set(),
    "excluded": None,
}
# Celery publishes in flight (api side): task id -> (span, context token).
_publishing: dict[str, tuple[Span, object]] = {}


def _env() -> Mapping[str, str]:
    # The OTEL_* variables are the SDK's own standard settings, read by the SDK itself;
    # the on/off decision reads the same ones rather than a second copy in our config.
    return os.environ  # noqa: TID251


def tracing_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment turns tracing on (an OTLP endpoint, SDK not disabled)."""
    env = _env() if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def configure_tracing(
    service: str,
    *,
    processor: SpanProcessor | None = None,
    env: Mapping[str, str] | None = None,
) -> TracerProvider | None:
    """Set up this process's tracer provider, once; None when tracing is off.

    Args:
        service: The component (``api``, ``ui``, ``worker``, ``backup``); the service
            name is ``ballast-<service>`` unless ``OTEL_SERVICE_NAME`` says otherwise.
        processor: A span processor to use instead of the OTLP exporter's batch
            processor (tests: a `SimpleSpanProcessor` over an in-memory exporter); it
            turns tracing on whatever the environment says.
        env: The environment to decide from (default: the process's).

    Returns:
        The provider, also installed as the global one for libraries that trace.
    """
    env = _env() if env is None else env
    with _lock:
        current: TracerProvider | None = _state["provider"]
        if current is not None and processor is None:
            return current
        if processor is None and not tracing_configured(env):
            return None
        attributes: dict[str, str] = {}
        if not env.get("OTEL_SERVICE_NAME"):
            attributes[SERVICE_NAME] = f"ballast-{service}"
        # The sampler comes from OTEL_TRACES_SAMPLER(_ARG) (default: parent-based,
        # always on); the resource merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME.
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(MaskUrls())
        provider.add_span_processor(processor or BatchSpanProcessor(_otlp_exporter()))
        _state.update(
            provider=provider,
            service=service,
            instrumented=set(),
            excluded=_excluded_urls(env),
        )
        # Global: FastAPI's native telemetry and libraries that trace use it.
        trace.set_tracer_provider(provider)
        return provider


# Probes and scrapes reach every pod every few seconds: no trace wants them, and they
# would drown a collector's sampling budget. More paths are excluded by the standard
# OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS): comma-separated
# regular expressions, searched in the request's path.
UNTRACED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})


def _excluded_urls(env: Mapping[str, str]) -> ExcludeList | None:
    given = env.get(
        "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", env.get("OTEL_PYTHON_EXCLUDED_URLS", "")
    )
    return parse_excluded_urls(given) if given.strip() else None


def untraced(scope: MutableMapping[str, Any]) -> bool:
    """Whether an ASGI request goes untraced: a probe or scrape path, or one the
    ``OTEL_PYTHON_*_EXCLUDED_URLS`` setting names (FastAPI's ``telemetry.exclude``)."""
    path = str(scope.get("path", ""))
    if path in UNTRACED_PATHS:
        return True
    excluded: ExcludeList | None = _state["excluded"]
    return excluded is not None and excluded.url_disabled(path)


def quiet_if_untraced(scope: MutableMapping[str, Any]) -> Any:
    """A context manager that, for an `untraced` request with tracing on, suppresses
    every instrumentation inside it: its SQL, Redis and object-store calls would
    otherwise become root spans of their own."""
    if _state["provider"] is not None and untraced(scope):
        return suppress_instrumentation()
    return nullcontext()


# Span attributes that carry a raw URL (set when the span starts): masked like the access
# log's path and query, so a card number or an e-mail in a URL never leaves the process.
URL_ATTRIBUTES = ("url.path", "url.query", "url.full", "http.target", "http.url")


class MaskUrls(SpanProcessor):
    """Masks personal data and secrets in the URL attributes of every span as it starts."""

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        attributes = getattr(span, "attributes", None) or {}
        for key in URL_ATTRIBUTES:
            value = attributes.get(key)
            if isinstance(value, str):
                masked = mask_value(value)
                if masked != value:
                    span.set_attribute(key, masked)


def _otlp_exporter() -> SpanExporter:
    exporter: type[SpanExporter] = importlib.import_module(
        "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    ).OTLPSpanExporter
    return exporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*


def tracer_provider() -> TracerProvider | None:
    """This process's provider (None: tracing off)."""
    provider: TracerProvider | None = _state["provider"]
    return provider


def tracing_enabled() -> bool:
    """Whether this process records spans."""
    return _state["provider"] is not None


def shutdown_tracing() -> None:
    """Flush and forget the provider, undo the instrumentations (process exit, tests)."""
    with _lock:
        provider: TracerProvider | None = _state["provider"]
        done: set[str] = _state["instrumented"]
        _state.update(provider=None, service=None, instrumented=set(), excluded=None)
    for name in done:
        if name == "celery_publish":
            signals = importlib.import_module("celery.signals")
            signals.before_task_publish.disconnect(_before_publish)
            signals.after_task_publish.disconnect(_after_publish)
        else:
            module, cls = _INSTRUMENTORS[name]
            getattr(importlib.import_module(module), cls)().uninstrument()
    if provider is not None:
        provider.shutdown()
        # The API sets its global provider once per process; forgetting it lets a
        # later `configure_tracing` (tests) install another. This is what
        # opentelemetry-test-utils' reset_trace_globals does.
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None


def get_tracer(name: str = TRACER_NAME) -> trace.Tracer:
    """A tracer of this process's provider (a no-op one when tracing is off)."""
    provider = tracer_provider()
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(name)


# ------------------------------------------------------------------------ ids


def new_trace_id() -> str:
    """A new W3C trace id (32 lowercase hex characters), from the SDK's generator."""
    return format_trace_id(_ids.generate_trace_id())


def new_span_id() -> str:
    """A new W3C span id (16 lowercase hex characters), from the SDK's generator."""
    return format_span_id(_ids.generate_span_id())


def current_ids() -> tuple[str, str] | None:
    """The current span's ``(trace_id, span_id)``, or None outside a valid span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The W3C trace context (``traceparent``/``tracestate``, baggage) in `headers`."""
    return propagate.extract(headers)


@contextmanager
def request_span(headers: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """The current request's span, made when no instrumentation made one.

    With tracing on, the server span of the ASGI instrumentation is current and is
    used as is. Off, a non-recording span with the incoming ``traceparent``'s trace id
    (or a new one) and a new span id becomes current, so logs, errors and outgoing
    calls carry valid ids without any span being recorded.

    Yields:
        ``(trace_id, span_id)`` of the request's span.
    """
    ids = current_ids()
    if ids is not None:
        yield ids
        return
    parent = trace.get_current_span(extract_context(headers)).get_span_context()
    span_ctx = SpanContext(
        trace_id=parent.trace_id if parent.is_valid else _ids.generate_trace_id(),
        span_id=_ids.generate_span_id(),
        is_remote=False,
        trace_flags=parent.trace_flags if parent.is_valid else TraceFlags(0),
        trace_state=parent.trace_state if parent.is_valid else None,
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_ctx)))
    try:
        yield format_trace_id(span_ctx.trace_id), format_span_id(span_ctx.span_id)
    finally:
        otel_context.detach(token)


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (for a response header), or None.

    Written directly (version 00, as the W3C propagator writes it): the header is W3C
    whatever propagators are configured, and every api response carries it, so it
    does not go through the propagators' carrier machinery.
    """
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return (
        f"00-{format_trace_id(ctx.trace_id)}-{format_span_id(ctx.span_id)}"
        f"-{int(ctx.trace_flags):02x}"
    )


@contextmanager
def action_span(name: str, **attributes: str) -> Iterator[Span]:
    """A span for one unit of work of ours (a UI action, a CLI command)."""
    with get_tracer().start_as_current_span(
        name, kind=SpanKind.INTERNAL, attributes=attributes
    ) as span:
        yield span


# ----------------------------------------------------------- instrumentations

_INSTRUMENTORS = {
    "httpx": ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    "celery": ("opentelemetry.instrumentation.celery", "CeleryInstrumentor"),
    "redis": ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
    "botocore": ("opentelemetry.instrumentation.botocore", "BotocoreInstrumentor"),
}


def instrument(*names: str) -> None:
    """Apply the named library instrumentations to this process (once each, when on).

    Names: ``httpx``, ``celery`` (publish and run spans; worker processes), ``redis``,
    ``botocore``. The api's requests, SQL engines and Celery publishing have their own
    helpers (`asgi_middleware`, `instrument_engine`, `instrument_celery_publish`).
    """
    provider = tracer_provider()
    if provider is None:
        return
    done: set[str] = _state["instrumented"]
    for name in names:
        if name in done:
            continue
        module, cls = _INSTRUMENTORS[name]
        # Imported here: the UI has only the httpx instrumentation installed.
        instrumentor = getattr(importlib.import_module(module), cls)()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=provider)
        done.add(name)


def instrument_httpx_client(client: Any) -> None:
    """Trace one httpx client's requests and send W3C context on them (when on)."""
    provider = tracer_provider()
    if provider is None:
        return
    module = importlib.import_module("opentelemetry.instrumentation.httpx")
    module.HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def instrument_engine(engine: Any) -> None:
    """Trace a SQLAlchemy engine's statements (an async engine's too), when on."""
    provider = tracer_provider()
    if provider is None:
        return
    sync_engine = getattr(engine, "sync_engine", engine)
    if getattr(sync_engine, "_ballast_traced", False):
        return
    module = importlib.import_module("opentelemetry.instrumentation.sqlalchemy.engine")
    meter = importlib.import_module("opentelemetry.metrics").NoOpMeter(TRACER_NAME)
    module.EngineTracer(
        provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        sync_engine,
        meter.create_up_down_counter("db.client.connections.usage"),
    )
    sync_engine._ballast_traced = True


def instrument_celery_publish() -> None:
    """Producer spans and W3C context in the headers of every message this process
    publishes with ``send_task`` (the api: its Celery app registers no tasks, which the
    Celery instrumentation needs to end its publish span)."""
    if tracer_provider() is None or "celery_publish" in _state["instrumented"]:
        return
    signals = importlib.import_module("celery.signals")
    signals.before_task_publish.connect(_before_publish, weak=False)
    signals.after_task_publish.connect(_after_publish, weak=False)
    _state["instrumented"].add("celery_publish")


def _task_id(headers: Mapping[str, Any] | None, body: Any) -> str | None:
    if headers and headers.get("id"):
        return str(headers["id"])
    if isinstance(body, dict) and body.get("id"):
        return str(body["id"])
    return None


def _before_publish(
    sender: Any = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
    **_: Any,
) -> None:
    task_id = _task_id(headers, body)
    if task_id is None or tracer_provider() is None:
        return
    span = get_tracer("opentelemetry.instrumentation.celery").start_span(
        f"apply_async/{sender}",
        kind=SpanKind.PRODUCER,
        attributes={"celery.action": "apply_async", "celery.task_name": str(sender)},
    )
    span.set_attribute("messaging.message.id", task_id)
    token = otel_context.attach(trace.set_span_in_context(span))
    _publishing[task_id] = (span, token)
    if headers is not None:
        propagate.inject(headers)


def _after_publish(
    headers: dict[str, Any] | None = None, body: Any = None, **_: Any
) -> None:
    task_id = _task_id(headers, body)
    entry = _publishing.pop(task_id, None) if task_id else None
    if entry is None:
        return
    span, token = entry
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]
