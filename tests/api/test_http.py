from __future__ import annotations

import gc
import importlib.metadata

from fastapi.testclient import TestClient

from ballast_api.main import create_app
from ballast_common.db.migrate import head_revision
from ballast_common.telemetry.metrics import exposition
from tests.api.conftest import Api

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_health_and_readiness(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": True,
        "data_dir": True,
        "object_store": True,
    }


def test_readiness_fails_when_a_dependency_is_down(api: Api) -> None:
    api.config.redis_url = "redis://127.0.0.1:1/0"
    resp = api.client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["redis"] is False


def test_readiness_with_a_real_redis(api: Api, redis_server) -> None:  # type: ignore[no-untyped-def]
    api.config.redis_url = redis_server.url
    resp = api.client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["checks"]["redis"] is True


def test_metrics_expose_requests_latency_and_pool(api: Api) -> None:
    api.client.get("/v1/projects", headers=api.h("viewer"))
    api.client.get(
        "/v1/projects/00000000-0000-0000-0000-000000000001", headers=api.h("viewer")
    )
    # Not on the main port (which the Ingress routes): the metrics port serves them.
    assert api.client.get("/metrics").status_code == 404
    text = exposition()[0].decode()
    assert (
        'ballast_http_requests_total{method="GET",route="/v1/projects",service="api",status="200"}'
        in text
    )
    assert 'route="/v1/projects/{project_id}"' in text
    assert "ballast_http_request_duration_seconds_bucket" in text
    assert 'ballast_db_pool_connections{service="api",state="size"}' in text
    # What the dashboards' release and migration annotations read.
    version = importlib.metadata.version("ballast-api")
    info = f'ballast_build_info{{schema="{head_revision()}",service="api",version="{version}"}} 1.0'
    assert info in text


def test_openapi_lists_every_route_with_bearer_security(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/sessions",
        "/v1/sessions/me",
        "/v1/drafts",
        "/v1/forms/{form_id}",
        "/v1/projects",
        "/v1/projects/{project_id}",
        "/v1/audit",
        "/v1/events",
        "/healthz",
        "/readyz",
    } <= paths
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_trace_and_correlation_ids_are_honoured_and_returned(api: Api) -> None:
    resp = api.client.get(
        "/v1/projects/not-a-uuid",
        headers=api.h(
            "viewer",
            traceparent=f"00-{TRACE}-00f067aa0ba902b7-01",
            **{"X-Correlation-ID": "abc-1"},
        ),
    )
    assert resp.status_code == 422
    assert resp.json()["trace_id"] == TRACE
    assert resp.headers["x-correlation-id"] == "abc-1"
    assert resp.headers["traceparent"].startswith(f"00-{TRACE}-")
    # Of a repeated header the first counts, as the routes read headers.
    twice = api.client.get(
        "/healthz",
        headers=[("X-Correlation-ID", "first-1"), ("X-Correlation-ID", "second-2")],
    )
    assert twice.headers["x-correlation-id"] == "first-1"
    fresh = api.client.get("/healthz")
    assert len(fresh.headers["x-correlation-id"]) >= 16
    assert fresh.headers["traceparent"].split("-")[1] != TRACE


def test_unknown_route_and_method_use_the_error_shape(api: Api) -> None:
    nf = api.client.get("/v1/nope")
    assert nf.status_code == 404
    assert set(nf.json()) == {"code", "message", "details", "trace_id"}
    na = api.client.post("/healthz")
    assert na.status_code == 405
    assert na.json()["code"] == "method_not_allowed"


def test_unhandled_error_is_500_with_trace_id_and_no_internals(api: Api) -> None:
    async def boom() -> None:
        raise RuntimeError("secret internals password=hunter2")

    api.client.app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
    resp = api.client.get("/boom")
    assert resp.status_code == 500
    body = resp.json()
    assert body["code"] == "internal_error"
    assert "hunter2" not in resp.text
    assert body["trace_id"] in body["message"]


def test_startup_objects_are_frozen_while_serving_and_released_after(
    api: Api,
) -> None:
    # While the app serves, what start-up built is out of the collector's sight (a
    # collection during a request does not scan the framework) ...
    assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    # ... and once an app stops it hands them back: a process that builds app after
    # app (the tests) does not pile them up for ever.
    with TestClient(create_app(config=api.config, db=api.db)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() >= frozen
    assert gc.get_freeze_count() == 0
