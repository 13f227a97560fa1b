"""One click is one trace: the UI's action, the api request and its SQL statements, the
Celery publish and the task run in a real worker process.

The UI client and the api run in this process and export to an in-memory exporter; the
worker (prefork, its own process) exports over OTLP/HTTP, configured by the standard
`OTEL_*` variables only, to a small OTLP receiver in the test. No OpenTelemetry part is
mocked.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from ballast_api.main import create_app
from ballast_common.db import run_tx
from ballast_common.seed import seed_demo
from ballast_common.telemetry import configure_tracing, shutdown_tracing
from ballast_testing.servers import free_port
from ballast_ui.client import ApiClient, make_http
from ballast_ui.metrics import end_action, note_trigger
from tests.api.conftest import open_session
from tests.jobs.conftest import Stack

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SpanRow:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    service: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """The traces endpoint of an OTLP/HTTP collector (protobuf), keeping the spans."""

    def __init__(self) -> None:
        self.spans: list[SpanRow] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                rows = []
                for rs in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in rs.resource.attributes
                        if a.key == "service.name"
                    )
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            rows.append(
                                SpanRow(
                                    s.name,
                                    s.trace_id.hex(),
                                    s.span_id.hex(),
                                    s.parent_span_id.hex() or None,
                                    SpanKind(s.kind - 1).name,
                                    service,
                                    {a.key: a.value for a in s.attributes},
                                )
                            )
                with lock:
                    spans.extend(rows)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def api_server(app: Any) -> Iterator[str]:
    """The api served by uvicorn in a thread of this process (its spans are ours)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("api did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing("api", processor=SimpleSpanProcessor(exporter))
    yield exporter
    shutdown_tracing()


def _rows(exporter: InMemorySpanExporter) -> list[SpanRow]:
    rows = []
    for s in exporter.get_finished_spans():
        ctx = s.get_span_context()
        assert ctx is not None
        rows.append(
            SpanRow(
                s.name,
                format_trace_id(ctx.trace_id),
                format_span_id(ctx.span_id),
                format_span_id(s.parent.span_id) if s.parent else None,
                s.kind.name,
                str(s.resource.attributes.get("service.name")),
                dict(s.attributes or {}),
            )
        )
    return rows


def _wait_for(find: Callable[[], SpanRow | None], what: str) -> SpanRow:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what}")


def test_one_save_that_starts_a_job_is_one_trace(
    make_stack: Callable[..., Stack],
    receiver: OtlpReceiver,
    memory: InMemorySpanExporter,
) -> None:
    stack = make_stack()
    run_tx(seed_demo, db=stack.db)
    stack.start_worker(
        concurrency=1,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    # The api opens (and at shutdown closes) its own engines, on its own event loop.
    with api_server(create_app(config=stack.config)) as url:
        # The UI's own client: make_http traces it and sends the W3C context.
        http = make_http(url)
        client = ApiClient(http, open_session(stack.db, stack.config, "editor"))
        state: dict[str, Any] = {}
        note_trigger(state, "button")  # the Save callback: the action's span starts
        job = client.create_job("demo.sleep", {"seconds": 0.1, "steps": 1})
        end_action("analysis", "button")  # the run after the callback ends it
        http.close()
    stack.wait(job.id)

    local = _rows(memory)
    (ui,) = [s for s in local if s.name == "ui button analysis"]
    trace_id = ui.trace_id
    assert ui.parent_id is None
    in_trace = [s for s in local if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in in_trace}
    (request,) = [s for s in in_trace if s.name == "POST /v1/jobs"]
    assert request.kind == "SERVER"
    # The api's request span is a child of the UI client's call, itself the action's.
    client_call = by_id[request.parent_id or ""]
    assert client_call.kind == "CLIENT"
    assert client_call.parent_id == ui.span_id
    sql = [s for s in in_trace if "db.system" in s.attributes]
    assert any(s.name.startswith("INSERT") for s in sql), [s.name for s in sql]
    (publish,) = [s for s in in_trace if s.name == "apply_async/demo.sleep"]
    assert publish.kind == "PRODUCER"

    def ancestors(span: SpanRow) -> set[str]:
        seen = set()
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            seen.add(span.span_id)
        return seen

    assert request.span_id in ancestors(publish)
    assert all(request.span_id in ancestors(s) for s in sql)

    run = _wait_for(
        lambda: next((s for s in receiver.spans if s.name == "run/demo.sleep"), None),
        "task run span",
    )
    assert run.service == "ballast-worker"
    assert run.kind == "CONSUMER"
    assert run.trace_id == trace_id
    assert run.parent_id == publish.span_id
    # The worker's statements are children of the run.
    worker_sql = [
        s
        for s in receiver.spans
        if s.trace_id == trace_id and "db.system" in s.attributes
    ]
    assert worker_sql
    assert {s.parent_id for s in worker_sql} <= {run.span_id} | {
        s.span_id for s in receiver.spans
    }
