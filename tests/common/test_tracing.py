from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from celery import Celery
from celery.signals import before_task_publish
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from sqlalchemy import create_engine, text

from ballast_common.telemetry import (
    action_span,
    configure_tracing,
    current_context,
    get_logger,
    instrument,
    instrument_engine,
    instrument_httpx_client,
    log_error,
    request_span,
    shutdown_tracing,
    traceparent,
    tracing_enabled,
)
from ballast_common.telemetry import tracing as tracing_mod
from tests.common.conftest import LogLines

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing("test", processor=SimpleSpanProcessor(exporter))
    yield exporter
    shutdown_tracing()


def _ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_SDK_DISABLED": "TRUE",
            },
            False,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_TRACES_EXPORTER": "none",
            },
            False,
        ),
    ],
)
def test_tracing_is_on_only_with_an_endpoint_and_not_disabled(
    env: dict[str, str], on: bool
) -> None:
    assert tracing_mod.tracing_configured(env) is on


def test_off_by_default_nothing_is_made() -> None:
    assert configure_tracing("test", env={}) is None
    assert not tracing_enabled()
    assert isinstance(tracing_mod.get_tracer(), trace.NoOpTracer)
    instrument("httpx")  # a no-op when off
    engine = create_engine("sqlite://")
    instrument_engine(engine)
    assert not getattr(engine, "_ballast_traced", False)


def test_an_endpoint_turns_on_the_otlp_exporter_with_the_service_name() -> None:
    provider = configure_tracing(
        "ui", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    )
    try:
        assert provider is not None
        assert tracing_enabled()
        assert provider.resource.attributes["service.name"] == "ballast-ui"
        # Once per process: a second call returns the same provider.
        assert configure_tracing("ui", env={}) is provider
    finally:
        shutdown_tracing()
    assert not tracing_enabled()


def test_otel_service_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-ui")
    provider = configure_tracing(
        "ui",
        processor=SimpleSpanProcessor(InMemorySpanExporter()),
        env={"OTEL_SERVICE_NAME": "shop-ui"},
    )
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "shop-ui"
    finally:
        shutdown_tracing()


def test_log_lines_and_errors_carry_the_current_span(
    spans: InMemorySpanExporter, log_lines: LogLines
) -> None:
    log = get_logger("ballast.test")
    with action_span("work"):
        log.info("inside")
        trace_id = log_error(ValueError("boom"))
        ctx = current_context()
    log.info("outside")
    (done,) = spans.get_finished_spans()
    want_trace, want_span = _ids(done)
    inside, error, outside = log_lines()
    for line in (inside, error):
        assert (line["trace_id"], line["span_id"]) == (want_trace, want_span)
    assert trace_id == want_trace
    assert (ctx["trace_id"], ctx["span_id"]) == (want_trace, want_span)
    assert (outside["trace_id"], outside["span_id"]) == (None, None)


@pytest.mark.usefixtures("spans")
def test_request_span_uses_the_recording_span_when_there_is_one() -> None:
    with (
        action_span("server") as span,
        request_span({"traceparent": f"00-{TRACE}-{SPAN}-01"}) as ids,
    ):
        assert ids == _ids(span)  # type: ignore[arg-type]
        assert (traceparent() or "").startswith(f"00-{ids[0]}-{ids[1]}-")


def test_off_a_request_keeps_the_callers_sampled_flag() -> None:
    with request_span({"traceparent": f"00-{TRACE}-{SPAN}-00"}) as (trace_id, _):
        assert trace_id == TRACE
        assert (traceparent() or "").endswith("-00")
    with request_span({}) as (trace_id, span_id):
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
        assert re.fullmatch(r"[0-9a-f]{16}", span_id)


def test_sql_statements_are_children_of_the_current_span(
    spans: InMemorySpanExporter,
) -> None:
    engine = create_engine("sqlite://")
    instrument_engine(engine)
    instrument_engine(engine)  # once per engine
    with action_span("work"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    finished = spans.get_finished_spans()
    work = next(s for s in finished if s.name == "work")
    sql = [s for s in finished if s.name != "work"]
    assert len(sql) == 1
    assert sql[0].parent is not None
    assert format_span_id(sql[0].parent.span_id) == _ids(work)[1]
    engine.dispose()


def test_httpx_calls_send_the_context(spans: InMemorySpanExporter) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        instrument_httpx_client(client)
        with action_span("click"):
            client.get("http://api.test/v1/x")
    finished = spans.get_finished_spans()
    call = next(s for s in finished if s.kind is SpanKind.CLIENT)
    trace_id, span_id = _ids(call)
    assert len(seen) == 1
    assert (seen[0] or "").startswith(f"00-{trace_id}-{span_id}-")


def test_celery_publish_is_a_producer_span_with_the_context_in_the_headers(
    spans: InMemorySpanExporter,
) -> None:
    tracing_mod.instrument_celery_publish()
    tracing_mod.instrument_celery_publish()  # once
    app = Celery("test-publish", broker="memory://", set_as_current=False)
    captured: dict[str, Any] = {}

    def keep(headers: dict[str, Any] | None = None, **_: Any) -> None:
        captured.update(headers or {})

    before_task_publish.connect(keep, weak=False)
    try:
        with action_span("request"):
            app.send_task("demo.sleep", args=["job-1"], task_id="job-1.abc")
    finally:
        before_task_publish.disconnect(keep)
        app.close()
    finished = spans.get_finished_spans()
    publish = next(s for s in finished if s.kind is SpanKind.PRODUCER)
    assert publish.name == "apply_async/demo.sleep"
    trace_id, span_id = _ids(publish)
    assert captured["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    request = next(s for s in finished if s.name == "request")
    assert publish.parent is not None
    assert format_span_id(publish.parent.span_id) == _ids(request)[1]
    # Nothing stays attached after the publish.
    assert not trace.get_current_span().get_span_context().is_valid


def test_instrument_once_and_shutdown_undoes_it() -> None:
    configure_tracing("test", processor=SimpleSpanProcessor(InMemorySpanExporter()))
    try:
        instrument("httpx", "redis")
        instrument("httpx")
        assert tracing_mod._state["instrumented"] == {"httpx", "redis"}
    finally:
        shutdown_tracing()
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry


def test_urls_in_spans_are_masked(spans: InMemorySpanExporter) -> None:
    tracer = tracing_mod.get_tracer()
    with tracer.start_as_current_span(
        "GET",
        attributes={
            "url.path": "/v1/projects",
            "url.query": "email=alice%40example.com&page=2",
            "url.full": "http://api/v1/x?card=4111+1111+1111+1111",
        },
    ):
        pass
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["url.path"] == "/v1/projects"
    assert "alice" not in str(attrs["url.query"])
    assert "page=2" in str(attrs["url.query"])
    assert "4111" not in str(attrs["url.full"])
