"""Bad input gets a clear 4xx naming the field, never a 500, and stores nothing.

Each case runs on SQLite and on PostgreSQL: NUL characters, `null` for required columns,
out-of-range numbers, NaN/Infinity literals, dates the driver would store as ±infinity,
numbers where a date or boolean is expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api, new_id

NUL = "\u0000"


TABLES = ("projects", "drafts", "forms", "events", "jobs", "audit_log", "write_ids")


def _counts(api: Api) -> dict[str, int]:
    return {t: int(api.sql(f"SELECT count(*) FROM {t}")[0][0]) for t in TABLES}


@pytest.fixture
def unchanged(api: Api) -> Iterator[None]:
    """The test's requests must store nothing at all."""
    before = _counts(api)
    yield
    assert _counts(api) == before


def _assert_422(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "trace_id"}
    assert body["code"] == "validation_error"
    assert any(field in f for f in body["details"]["fields"]), body
    assert field in body["message"]


def _raw(api: Api, method: str, url: str, text: str, user: str = "editor") -> Any:
    return api.client.request(
        method,
        url,
        content=text.encode(),
        headers=api.h(user, **{"Content-Type": "application/json"}),
    )


# --- NUL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": f"a{NUL}b"}, "name"),
        ({"name": "ok", "description": f"x{NUL}"}, "description"),
        ({"name": "ok", "tags": ["fine", f"t{NUL}"]}, "tags"),
    ],
)
@pytest.mark.usefixtures("unchanged")
def test_nul_in_project_is_422(api: Api, body: dict[str, Any], field: str) -> None:
    response = api.client.post("/v1/projects", json=body, headers=api.h("editor"))
    _assert_422(response, field)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"form_id": "f", "field": "a", "value": f"v{NUL}"}, "value"),
        ({"form_id": "f", "field": "a", "value": {f"k{NUL}": 1}}, "value"),
        ({"form_id": "f", "field": "a", "value": [["deep", f"{NUL}"]]}, "value"),
        ({"form_id": "f", "field": f"a{NUL}", "value": 1}, "field"),
        ({"form_id": f"f{NUL}", "field": "a", "value": 1}, "form_id"),
    ],
)
@pytest.mark.usefixtures("unchanged")
def test_nul_in_draft_is_422(api: Api, item: dict[str, Any], field: str) -> None:
    ok = {"form_id": "f", "field": "b", "value": "fine"}
    response = api.client.put(
        "/v1/drafts", json={"items": [ok, item]}, headers=api.h("editor")
    )
    _assert_422(response, field)


@pytest.mark.usefixtures("unchanged")
def test_nul_in_form_data_is_422(api: Api) -> None:
    for data in ({"title": f"x{NUL}"}, {f"ti{NUL}tle": "x"}, {"a": {"b": [NUL]}}):
        response = api.client.put(
            "/v1/forms/f1", json={"data": data}, headers=api.h("editor")
        )
        _assert_422(response, "data")


@pytest.mark.usefixtures("unchanged")
def test_nul_in_event_props_is_422_and_nothing_stored(api: Api) -> None:
    events = [
        {"event": "page.view", "props": {"page": "home"}},
        {"event": "page.view", "props": {"page": f"x{NUL}"}},
    ]
    response = api.client.post(
        "/v1/events", json={"events": events}, headers=api.h("editor")
    )
    _assert_422(response, "props")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/projects?q=a%00b",
        "/v1/drafts?form_id=f%00",
        "/v1/audit?resource_type=p%00",
        "/v1/jobs?name=x%00",
    ],
)
def test_nul_in_query_is_422(api: Api, url: str) -> None:
    response = api.client.get(url, headers=api.h("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["details"]["fields"], response.text


def test_nul_in_path_is_4xx(api: Api) -> None:
    response = api.client.get("/v1/forms/f%00x", headers=api.h("editor"))
    assert response.status_code in (404, 422), response.text
    assert set(response.json()) == {"code", "message", "details", "trace_id"}


@pytest.mark.parametrize("field", ["username", "password"])
@pytest.mark.usefixtures("unchanged")
def test_nul_in_login_is_422(api: Api, field: str) -> None:
    body = {"username": "editor", "password": "editor-demo-pass"}
    body[field] = body[field] + NUL
    response = api.client.post("/v1/sessions", json=body)
    _assert_422(response, field)


# --- null for required columns -------------------------------------------------------


def _project(api: Api) -> dict[str, Any]:
    response = api.client.post(
        "/v1/projects", json={"name": "P", "tags": ["a"]}, headers=api.h("editor")
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.parametrize("field", ["name", "status", "tags", "priority", "is_public"])
def test_patch_null_required_project_column_is_422(api: Api, field: str) -> None:
    project = _project(api)
    response = api.client.patch(
        f"/v1/projects/{project['id']}", json={field: None}, headers=api.h("editor")
    )
    _assert_422(response, field)
    stored = api.client.get(f"/v1/projects/{project['id']}", headers=api.h("editor"))
    assert stored.json()["version"] == project["version"]


def test_patch_null_is_active_is_422(api: Api) -> None:
    [(user_id,)] = api.sql("SELECT id FROM users WHERE username = 'viewer'")
    response = api.client.patch(
        f"/v1/users/{user_id}", json={"is_active": None}, headers=api.h("admin")
    )
    _assert_422(response, "is_active")


# --- numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [1e12, 1e300, -1, 999_999_999_999.999])
@pytest.mark.usefixtures("unchanged")
def test_budget_out_of_range_is_422(api: Api, budget: float) -> None:
    response = api.client.post(
        "/v1/projects", json={"name": "B", "budget": budget}, headers=api.h("editor")
    )
    _assert_422(response, "budget")


def test_budget_at_the_limit_round_trips(api: Api) -> None:
    response = api.client.post(
        "/v1/projects",
        json={"name": "B", "budget": 999_999_999_999.99},
        headers=api.h("editor"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["budget"] == 999_999_999_999.99


def test_budget_precision_is_in_the_schema(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    budget = schema["components"]["schemas"]["ProjectCreate"]["properties"]["budget"]
    assert budget["maximum"] == 999_999_999_999.99
    assert "Numeric(14,2)" in budget["description"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "priority": 2**70}, "priority"),
        ({"name": "x", "expected_version": 2**40}, "expected_version"),
    ],
)
def test_huge_integers_are_422(api: Api, body: dict[str, Any], field: str) -> None:
    project = _project(api)
    response = api.client.patch(
        f"/v1/projects/{project['id']}", json=body, headers=api.h("editor")
    )
    _assert_422(response, field)


def test_huge_integer_query_is_422(api: Api) -> None:
    project = _project(api)
    response = api.client.delete(
        f"/v1/projects/{project['id']}?expected_version={2**40}",
        headers=api.h("admin"),
    )
    _assert_422(response, "expected_version")


@pytest.mark.parametrize(
    ("method", "url", "text", "field"),
    [
        ("POST", "/v1/projects", '{"name": "x", "budget": NaN}', "budget"),
        ("POST", "/v1/projects", '{"name": "x", "budget": Infinity}', "budget"),
        (
            "PUT",
            "/v1/drafts",
            '{"items": [{"form_id": "f", "field": "a", "value": NaN}]}',
            "value",
        ),
        ("PUT", "/v1/forms/f1", '{"data": {"x": [1, -Infinity]}}', "data"),
        (
            "POST",
            "/v1/events",
            '{"events": [{"event": "a.b", "props": {"n": Infinity}}]}',
            "props",
        ),
    ],
)
@pytest.mark.usefixtures("unchanged")
def test_nan_and_infinity_literals_are_422(
    api: Api, method: str, url: str, text: str, field: str
) -> None:
    response = _raw(api, method, url, text)
    _assert_422(response, field)


def test_malformed_json_is_422_not_500(api: Api) -> None:
    response = _raw(api, "POST", "/v1/projects", '{"name": "x", ')
    assert response.status_code == 422, response.text
    response = _raw(api, "POST", "/v1/projects", '"\\ud800"')
    assert response.status_code == 422, response.text
    for blob in (b"\xffV", b'{"name": "\xe9"}', b"\xfe\xff\x00{"):
        response = api.client.post(
            "/v1/sessions", content=blob, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (blob, response.text)


# --- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
@pytest.mark.usefixtures("unchanged")
def test_infinity_dates_are_422(api: Api, day: str) -> None:
    response = api.client.post(
        "/v1/projects", json={"name": "D", "start_date": day}, headers=api.h("editor")
    )
    _assert_422(response, "start_date")


@pytest.mark.parametrize("day", ["0001-01-02", "9999-12-30", "2026-02-28"])
def test_extreme_but_finite_dates_round_trip(api: Api, day: str) -> None:
    response = api.client.post(
        "/v1/projects", json={"name": "D", "start_date": day}, headers=api.h("editor")
    )
    assert response.status_code == 201, response.text
    read = api.client.get(
        f"/v1/projects/{response.json()['id']}", headers=api.h("editor")
    )
    assert read.json()["start_date"] == day


@pytest.mark.parametrize(
    "url",
    ["/v1/audit?since=0001-01-01T00:00:00Z", "/v1/audit?until=9999-12-31T23:59:59Z"],
)
def test_infinity_datetimes_in_queries_are_422(api: Api, url: str) -> None:
    response = api.client.get(url, headers=api.h("admin"))
    assert response.status_code == 422, response.text


# --- strict types --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "is_public": 1}, "is_public"),
        ({"name": "x", "is_public": "yes"}, "is_public"),
        ({"name": "x", "start_date": 20260101}, "start_date"),
        ({"name": "x", "priority": "3"}, "priority"),
        ({"name": 5}, "name"),
    ],
)
@pytest.mark.usefixtures("unchanged")
def test_wrong_types_in_body_are_422(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.client.post("/v1/projects", json=body, headers=api.h("editor"))
    _assert_422(response, field)


@pytest.mark.parametrize(
    "url",
    [
        "/v1/audit?since=1700000000",
        "/v1/audit?until=0",
        "/v1/jobs?finished_since=1700000000",
        "/v1/jobs?mine=1",
        "/v1/jobs/summary?mine=0",
        "/v1/audit?since=2026-01-01",
        "/v1/audit?since=2026-01-01T10:00:00",
    ],
)
def test_numbers_for_dates_and_booleans_in_queries_are_422(api: Api, url: str) -> None:
    response = api.client.get(url, headers=api.h("admin"))
    assert response.status_code == 422, response.text


def test_booleans_and_iso_dates_in_queries_still_work(api: Api) -> None:
    for url in (
        "/v1/jobs?mine=true",
        "/v1/jobs/summary?mine=false",
        "/v1/audit?since=2026-01-01T00:00:00Z",
        "/v1/audit?until=2026-01-01T00:00:00%2B02:00",
        "/v1/jobs?finished_since=2026-01-01T00:00:00Z",
    ):
        response = api.client.get(url, headers=api.h("admin"))
        assert response.status_code == 200, (url, response.text)


@pytest.mark.usefixtures("unchanged")
def test_job_create_with_nul_is_422(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs",
        json={"name": "demo.sleep", "kwargs": {"x": f"a{NUL}"}},
        headers=api.h("editor"),
    )
    _assert_422(response, "kwargs")


def test_big_json_body_is_413(api: Api) -> None:
    blob = "x" * (9 * 1024 * 1024)
    response = _raw(api, "POST", "/v1/events", json.dumps({"events": [], "b": blob}))
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"


def test_idempotent_write_with_nul_key_is_422(api: Api) -> None:
    response = api.client.post(
        "/v1/projects",
        json={"name": "x"},
        headers=api.h("editor", **{"Idempotency-Key": new_id() + "\t"}),
    )
    assert response.status_code == 422, response.text


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", ["1", "a.1b", "page._x", "x" * 101])
def test_event_names_track_refuses_are_422_before_anything_is_stored(
    api: Api, name: str
) -> None:
    events = [{"event": "page.view"}, {"event": name}]
    response = api.client.post(
        "/v1/events", json={"events": events}, headers=api.h("editor")
    )
    _assert_422(response, "event")
