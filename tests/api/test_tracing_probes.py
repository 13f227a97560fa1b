"""With tracing on, probes and scrapes (/healthz, /readyz, /metrics) make no span at
all, not even of their SQL statements, while other requests are traced; more paths are
excluded by the standard OTEL_PYTHON_FASTAPI_EXCLUDED_URLS. In-memory exporter, the
real app on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind

from ballast_api.main import create_app
from ballast_common.db import DB
from ballast_common.telemetry import configure_tracing, shutdown_tracing
from tests.api.conftest import PASSWORDS, make_config, open_session


def _traced_client(
    seeded_dbs: dict[str, str],
    tmp_path: Path,
    env: dict[str, str],
    backend: str = "sqlite",
) -> Iterator[tuple[TestClient, InMemorySpanExporter, dict[str, str]]]:
    exporter = InMemorySpanExporter()
    configure_tracing("api", processor=SimpleSpanProcessor(exporter), env=env)
    db = DB(seeded_dbs[backend])
    config = make_config(tmp_path)
    try:
        app = create_app(config=config, db=db)
        with TestClient(app, raise_server_exceptions=False) as client:
            tokens = {u: open_session(db, config, u) for u in PASSWORDS}
            yield client, exporter, tokens
            client.portal.call(db.adispose)
    finally:
        shutdown_tracing()
        db.dispose()


@pytest.fixture
def traced(
    seeded_dbs: dict[str, str], tmp_path: Path
) -> Iterator[tuple[TestClient, InMemorySpanExporter, dict[str, str]]]:
    yield from _traced_client(seeded_dbs, tmp_path, {})


def test_probes_and_scrapes_make_no_span_other_requests_do(
    traced: tuple[TestClient, InMemorySpanExporter, dict[str, str]],
) -> None:
    client, exporter, tokens = traced
    for path in ("/healthz", "/readyz", "/metrics", "/healthz?x=1"):
        client.get(path)
    # /readyz ran its SELECT 1, yet nothing was recorded: no server span, no SQL span.
    assert exporter.get_finished_spans() == ()

    me = client.get(
        "/v1/sessions/me", headers={"Authorization": f"Bearer {tokens['viewer']}"}
    )
    assert me.status_code == 200
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in server] == ["GET /v1/sessions/me"]
    # Its SQL statements are traced (instrumentation is suppressed for probes only).
    assert any(s.kind is SpanKind.CLIENT for s in spans)


def test_the_standard_excluded_urls_setting_adds_paths(
    seeded_dbs: dict[str, str], tmp_path: Path
) -> None:
    env = {"OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "/v1/sessions/me$,/nothing"}
    for client, exporter, tokens in _traced_client(seeded_dbs, tmp_path, env):
        auth = {"Authorization": f"Bearer {tokens['viewer']}"}
        assert client.get("/v1/sessions/me", headers=auth).status_code == 200
        assert exporter.get_finished_spans() == ()
        assert client.get("/v1/projects", headers=auth).status_code == 200
        names = {s.name for s in exporter.get_finished_spans()}
        assert "GET /v1/projects" in names


@pytest.mark.integration
def test_a_save_past_the_router_is_traced_under_its_route(
    seeded_dbs: dict[str, str], tmp_path: Path
) -> None:
    """forms/hot.py answers PUT /v1/forms/{form_id} on PostgreSQL without the router;
    its server span is still named by the route, with its statement inside."""
    for client, exporter, tokens in _traced_client(
        seeded_dbs, tmp_path, {}, "postgresql"
    ):
        auth = {"Authorization": f"Bearer {tokens['editor']}"}
        form = f"traced.{tmp_path.name}"
        saved = client.put(f"/v1/forms/{form}", json={"data": {"a": 1}}, headers=auth)
        assert saved.status_code == 201, saved.text
        spans = exporter.get_finished_spans()
        server = [s for s in spans if s.kind is SpanKind.SERVER]
        assert [s.name for s in server] == ["PUT /v1/forms/{form_id}"]
        assert server[0].attributes["http.route"] == "/v1/forms/{form_id}"
        assert any(s.kind is SpanKind.CLIENT for s in spans)
