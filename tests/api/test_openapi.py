"""The OpenAPI document lists every status a route can answer, in the one error shape,
and OPTIONS answers every path the same way."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from ballast_api.main import create_app
from ballast_common.db import DB

ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(db=DB("sqlite://"))
    return app.openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def test_error_schema_is_the_one_error_shape(spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"code", "message", "details", "trace_id"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_every_error_status_uses_the_error_schema(spec: dict[str, Any]) -> None:
    for method, path, op in _operations(spec):
        for status, response in op["responses"].items():
            if int(status) < 400 or path == "/readyz":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (method, path, status)


def test_statuses_each_route_can_answer_are_documented(spec: dict[str, Any]) -> None:
    for method, path, op in _operations(spec):
        statuses = set(op["responses"])
        if path != "/healthz":
            assert "503" in statuses, (method, path)
        if op.get("security"):
            assert {"401", "503"} <= statuses, (method, path)
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        if "requestBody" in op:
            assert "413" in statuses, (method, path)
        if op.get("security") and method in ("POST", "PUT", "PATCH", "DELETE"):
            assert "409" in statuses, (method, path)
        if path.startswith(("/v1/users", "/v1/audit", "/v1/projects")) and path != (
            "/v1/users/me/preferences"
        ):
            assert "403" in statuses, (method, path)
        for status in statuses:
            assert op["responses"][status]["description"], (method, path, status)


# The sign-in routes need no token and answer 401 when the sign-in fails.
SIGN_IN = {"/v1/sessions", "/v1/sessions/oidc", "/v1/sessions/proxy"}


def test_unsecured_routes_do_not_claim_401(spec: dict[str, Any]) -> None:
    for method, path, op in _operations(spec):
        if not op.get("security") and not (method == "POST" and path in SIGN_IN):
            assert "401" not in op["responses"], (method, path)
    for path in SIGN_IN:
        login = spec["paths"][path]["post"]["responses"]
        assert login["401"]["content"]["application/json"]["schema"] == {
            "$ref": ERROR_REF
        }


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(db=DB("sqlite://")), raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/projects", {"GET", "POST", "OPTIONS"}),
        ("/v1/projects/00000000-0000-0000-0000-000000000000", None),
        ("/v1/drafts", {"GET", "PUT", "DELETE", "OPTIONS"}),
        ("/v1/forms/abc", {"GET", "PUT", "OPTIONS"}),
        ("/v1/sessions", {"POST", "DELETE", "OPTIONS"}),
        ("/healthz", {"GET", "OPTIONS"}),
    ],
)
def test_options_answers_with_allow(
    client: TestClient, path: str, allow: set[str] | None
) -> None:
    response = client.options(path)
    assert response.status_code == 204, response.text
    methods = {m.strip() for m in response.headers["allow"].split(",")}
    if allow is not None:
        assert methods == allow
    assert "OPTIONS" in methods


def test_options_on_unknown_path_is_404(client: TestClient) -> None:
    response = client.options("/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.json()) == {"code", "message", "details", "trace_id"}


def test_wrong_method_is_405_with_the_same_allow(client: TestClient) -> None:
    response = client.request("PATCH", "/v1/projects")
    assert response.status_code == 405
    options = client.options("/v1/projects")
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed == {m.strip() for m in options.headers["allow"].split(",")}
    assert response.json()["code"] == "method_not_allowed"
