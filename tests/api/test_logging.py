from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ballast_api import middleware
from ballast_common.telemetry import configure_logging
from tests.api.conftest import Api

TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure_logging("api", level="INFO", fmt="json", stream=buf)
    yield buf
    configure_logging("api", level="WARNING", fmt="console")
    logging.getLogger().handlers.clear()


def test_every_line_is_json_with_ids_and_no_secret(
    api: Api, log_buffer: io.StringIO
) -> None:
    login = api.client.post(
        "/v1/sessions",
        json={"username": "editor", "password": "editor-demo-pass"},
        headers={
            "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
            "X-Correlation-ID": "corr-log-1",
        },
    )
    token = login.json()["token"]
    api.client.get("/v1/sessions/me", headers={"Authorization": f"Bearer {token}"})
    api.client.post(
        "/v1/sessions", json={"username": "editor", "password": "wrong-password-123"}
    )
    lines = [
        json.loads(line) for line in log_buffer.getvalue().splitlines() if line.strip()
    ]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 3
    for line in lines:
        # The keys are on every line; outside a request (here: the test client's own
        # httpx lines) their value is null rather than a made-up id.
        assert {"trace_id", "correlation_id", "span_id", "service"} <= set(line), line
        assert line["service"] == "api"
    for line in requests:
        assert line["trace_id"], line
        assert line["correlation_id"], line
    assert requests[0]["trace_id"] == TRACE
    assert requests[0]["correlation_id"] == "corr-log-1"
    text = log_buffer.getvalue()
    assert token not in text
    assert "editor-demo-pass" not in text
    assert "wrong-password-123" not in text


@pytest.mark.parametrize("filler", [10, 300, 5000])
def test_the_access_lines_path_is_masked_at_every_length(filler: int) -> None:
    # Short paths are masked once per process (cached), long ones each time; either
    # way a card number never reaches the line, and the line is cut at its limit.
    path = f"/v1/projects/{'x' * filler}/4111111111111111"
    for _ in range(2):  # the second time from the cache, for short paths
        logged = middleware.logged_url({"path": path, "query_string": b""})["path"]
        assert "4111111111111111" not in logged
        assert len(logged) <= middleware._MAX_LOGGED_URL_PART
        if len(path) <= middleware._MAX_LOGGED_URL_PART:
            assert logged.startswith("/v1/projects/x")
            assert logged.endswith("1111")
