"""PUT /v1/forms/{form_id} past FastAPI's router on PostgreSQL (forms/hot.py): it answers
as the route would, keeps every middleware's guarantee, and hands the route whatever it
does not take itself, body intact."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from ballast_api.forms import hot
from ballast_api.forms import router as forms_router
from ballast_common.telemetry.metrics import exposition
from tests.api.conftest import Api, new_id

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many saves each path ran: `hot` (past the router) and `route`."""
    seen = {"hot": 0, "route": 0}
    hot_save, route_save = hot.save_form, forms_router.save_form_fast

    async def on_hot(*args: Any, **kwargs: Any) -> Any:
        seen["hot"] += 1
        return await hot_save(*args, **kwargs)

    async def on_route(*args: Any, **kwargs: Any) -> Any:
        seen["route"] += 1
        return await route_save(*args, **kwargs)

    monkeypatch.setattr(hot, "save_form", on_hot)
    monkeypatch.setattr(forms_router, "save_form_fast", on_route)
    return seen


def put(api: Api, form: str, body: Any, user: str = "editor", **headers: str) -> Any:
    return api.client.put(
        f"/v1/forms/{form}", json=body, headers=api.h(user, **headers)
    )


def test_a_save_is_answered_past_the_router_with_every_layer_applied(
    api: Api, paths: dict[str, int]
) -> None:
    key = new_id()
    created = put(
        api,
        "hot.a",
        {"data": {"x": 1}},
        **{"Idempotency-Key": key, "X-Correlation-ID": "c-1"},
    )
    assert created.status_code == 201, created.text
    assert paths == {"hot": 1, "route": 0}
    body = created.json()
    assert body["form_id"] == "hot.a"
    assert body["data"] == {"x": 1}
    assert body["version"] == 1
    assert body["overwrote"] is None
    # Request context and security headers, as on any response.
    assert created.headers["X-Correlation-ID"] == "c-1"
    assert created.headers["traceparent"].startswith("00-")
    assert created.headers["X-Content-Type-Options"] == "nosniff"
    assert created.headers["content-type"] == "application/json"
    # The same answer as the route gives on reading it back.
    loaded = api.client.get("/v1/forms/hot.a", headers=api.h("editor")).json()
    assert loaded == {k: body[k] for k in loaded}
    row = api.sql(
        "SELECT correlation_id, user_agent, write_id FROM audit_log "
        "WHERE resource_type = 'forms'"
    )
    assert [tuple(r) for r in row] == [("c-1", "testclient", key)]
    text = exposition()[0].decode()
    assert (
        'ballast_http_requests_total{method="PUT",route="/v1/forms/{form_id}",'
        'service="api",status="201"}' in text
    )


def test_a_replay_and_a_stale_version_go_to_the_route_with_their_body(
    api: Api, paths: dict[str, int]
) -> None:
    key = new_id()
    first = put(api, "hot.b", {"data": {"x": 1}}, **{"Idempotency-Key": key})
    again = put(api, "hot.b", {"data": {"x": 1}}, **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    stale = put(api, "hot.b", {"data": {"x": 2}, "expected_version": 0})
    assert stale.status_code == 409, stale.text
    assert stale.json()["code"] == "conflict"
    # Each ran the statement once, here; the route answered the two it left.
    assert paths == {"hot": 3, "route": 0}
    assert api.audit_count(resource_type="forms") == 1


@pytest.mark.parametrize(
    ("form", "body", "headers", "status", "fields"),
    [
        ("project.00000000-0000-0000-0000-000000000001", {"data": {}}, {}, 404, None),
        ("hot.c", {"data": "not an object"}, {}, 422, ["data"]),
        ("hot.c", {"data": {}, "expected_version": -1}, {}, 422, ["expected_version"]),
        (
            "hot.c",
            {"data": {}},
            {"Idempotency-Key": " padded "},
            422,
            ["Idempotency-Key"],
        ),
        (
            "hot.c",
            {"data": {}},
            {"Idempotency-Key": "k" * 101},
            422,
            ["Idempotency-Key"],
        ),
        ("hot c", {"data": {}}, {}, 422, ["form_id"]),
        ("x" * 201, {"data": {}}, {}, 422, ["form_id"]),
    ],
)
def test_what_the_hot_path_does_not_take_the_route_answers(
    api: Api,
    paths: dict[str, int],
    form: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    fields: list[str] | None,
) -> None:
    resp = put(api, form, body, **headers)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] in ("not_found", "validation_error")
    if fields is not None:
        # The route's own wording, naming the field: it parsed the body as sent.
        assert resp.json()["details"]["fields"] == fields
    assert paths["hot"] == 0
    assert api.audit_count(resource_type="forms") == 0


def test_who_may_not_save_gets_the_routes_answers(
    api: Api, paths: dict[str, int]
) -> None:
    viewer = put(api, "hot.d", {"data": {}}, user="viewer")
    assert viewer.status_code == 403
    assert viewer.json()["details"]["permission"] == "forms:write"
    bad = api.client.put(
        "/v1/forms/hot.d", json={"data": {}}, headers={"Authorization": "Bearer nope"}
    )
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"] == "Bearer"
    assert bad.json()["code"] == "unauthenticated"
    missing = api.client.put("/v1/forms/hot.d", json={"data": {}})
    assert missing.status_code == 401
    basic = api.client.put(
        "/v1/forms/hot.d", json={"data": {}}, headers={"Authorization": "Basic eDp5"}
    )
    assert basic.status_code == 401
    assert paths == {"hot": 0, "route": 0}
    assert api.audit_count(resource_type="forms") == 0


def test_a_body_that_is_not_json_and_input_the_guard_refuses(
    api: Api, paths: dict[str, int]
) -> None:
    text = api.client.put(
        "/v1/forms/hot.e",
        content=b'{"data": {}}',
        headers=api.h("editor", **{"Content-Type": "text/plain"}),
    )
    assert text.status_code == 422
    nul = api.client.put(
        "/v1/forms/hot.e",
        content=b'{"data": {"a": "x\\u0000y"}}',
        headers=api.h("editor", **{"Content-Type": "application/json"}),
    )
    assert nul.status_code == 422
    assert nul.json()["details"]["fields"] == ["data.a"]
    broken = api.client.put(
        "/v1/forms/hot.e",
        content=b'{"data": {',
        headers=api.h("editor", **{"Content-Type": "application/json"}),
    )
    assert broken.status_code == 422
    assert paths["hot"] == 0
    ok = api.client.put(
        "/v1/forms/hot.e",
        content=b'{"data": {"a": "\\u00e9"}}',
        headers=api.h("editor", **{"Content-Type": "application/merge-patch+json"}),
    )
    assert ok.status_code == 201
    assert ok.json()["data"] == {"a": "é"}
    assert paths["hot"] == 1


def test_a_form_id_is_taken_only_when_the_route_would_match_it() -> None:
    def scope(method: str, path: str) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path}

    assert hot.form_id_of(scope("PUT", "/v1/forms/a.b:c-d_e")) == "a.b:c-d_e"
    for method, path in [
        ("GET", "/v1/forms/a"),
        ("PUT", "/v1/forms/"),
        ("PUT", "/v1/forms/a/b"),
        ("PUT", "/v1/formsx/a"),
        ("PUT", "/v1/forms/a b"),
        ("PUT", "/v1/forms/a\x00"),
        ("PUT", "/v1/forms/" + "a" * 201),
        ("PUT", "/v1/forms/project.00000000-0000-0000-0000-000000000001"),
        ("PUT", "/v1/forms/project-extras.00000000-0000-0000-0000-000000000001"),
    ]:
        assert hot.form_id_of(scope(method, path)) is None, path
    assert hot.form_id_of({"type": "websocket", "path": "/v1/forms/a"}) is None


def test_a_database_that_cannot_answer_is_a_503_as_on_the_route(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool timing out (every connection busy) is answered by the app's database
    error handler on the route: 503 with Retry-After. Past the router, the same."""

    async def pool_exhausted(*_args: Any, **_kwargs: Any) -> Any:
        raise SQLAlchemyTimeoutError("QueuePool limit reached")

    monkeypatch.setattr(hot, "save_form", pool_exhausted)
    resp = put(api, "hot.f", {"data": {"x": 1}})
    assert resp.status_code == 503, resp.text
    assert resp.json()["code"] == "unavailable"
    assert int(resp.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("name", ["Idempotency-Key", "Authorization"])
def test_a_repeated_header_counts_as_the_route_reads_it(
    api: Api, paths: dict[str, int], name: str
) -> None:
    # The route (Starlette's headers) reads the first of a repeated header; the hot path
    # must read the same one, or a save and its retry through the route would use
    # different write ids (or identities).
    first, second = new_id(), new_id()
    auth = api.h("editor")["Authorization"]
    if name == "Idempotency-Key":
        extra = [("Idempotency-Key", first), ("Idempotency-Key", second)]
        headers = [("Authorization", auth), *extra]
    else:
        headers = [
            ("Authorization", auth),
            ("Authorization", "Bearer not-a-session"),
            ("Idempotency-Key", first),
        ]
    answer = api.client.put(
        "/v1/forms/hot.repeated", json={"data": {"x": 1}}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    assert paths == {"hot": 1, "route": 0}
    recorded = [r[0] for r in api.sql("SELECT write_id FROM write_ids")]
    assert recorded == [first]
