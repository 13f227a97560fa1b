"""ApiClient: error mapping, retries of idempotent calls, the token kept out of sight."""

from __future__ import annotations

import json

import httpx
import pytest

from ballast_common.errors import AuthenticationError, ConflictError, NotFoundError
from ballast_ui.client import ApiClient, ApiUnavailable, DraftItem, make_http

USER: dict[str, object] = {
    "id": "00000000-0000-0000-0000-000000000001",
    "username": "editor",
    "display_name": "Ed",
    "email": None,
    "roles": ["editor"],
    "permissions": ["projects:read", "projects:write"],
    "preferences": {},
}


def client(
    handler: httpx.MockTransport, token: str | None = "secret-token"
) -> ApiClient:
    return ApiClient(
        make_http("http://api.test", transport=handler), token, backoff_s=0
    )


def test_bearer_token_sent_and_hidden_from_repr() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=USER)

    api = client(httpx.MockTransport(handler))
    assert api.me().can("projects:write")
    assert seen[0].headers["Authorization"] == "Bearer secret-token"
    assert seen[0].url.path == "/v1/sessions/me"
    assert "secret-token" not in repr(api)


def test_connect_errors_retry_idempotent_writes_with_same_key() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) < 3:
            raise httpx.ConnectError("refused", request=request)
        body = json.loads(request.content)
        item = body["items"][0]
        return httpx.Response(
            200,
            json={
                "items": [
                    {
                        "form_id": item["form_id"],
                        "field": item["field"],
                        "version": 1,
                        "applied": True,
                    }
                ]
            },
        )

    api = client(httpx.MockTransport(handler))
    result = api.put_drafts([DraftItem(form_id="f", field="a", value=1, seq=1)], "w-1")
    assert result[0].applied
    assert keys == ["w-1", "w-1", "w-1"]


def test_unreachable_after_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ApiUnavailable):
        client(httpx.MockTransport(handler)).get_drafts()


def test_login_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ApiUnavailable):
        client(httpx.MockTransport(handler), token=None).login("u", "p")
    assert calls == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (404, NotFoundError), (503, ApiUnavailable)],
)
def test_errors_are_typed(status: int, error: type[Exception]) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, json={"code": "x", "message": "m", "details": {}, "trace_id": "t-1"}
        )

    with pytest.raises(error) as info:
        client(httpx.MockTransport(handler)).get_project("p")
    assert info.value.details["trace_id"] == "t-1"  # type: ignore[attr-defined]


def test_conflict_carries_both_versions() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            409,
            json={
                "code": "conflict",
                "message": "stale",
                "details": {"current": {"version": 3}, "attempted": {"version": 2}},
                "trace_id": None,
            },
        )

    with pytest.raises(ConflictError) as info:
        client(httpx.MockTransport(handler)).save_form("f", {"a": 1}, 2)
    assert info.value.current == {"version": 3}
    assert info.value.attempted == {"version": 2}


def test_missing_form_is_none() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404,
            json={
                "code": "not_found",
                "message": "no",
                "details": {},
                "trace_id": None,
            },
        )

    assert client(httpx.MockTransport(handler)).get_form("f") is None


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [("42", 42.0), (None, None), ("soon", None), ("-5", None), ("1e12", None)],
)
def test_a_throttled_login_says_so_with_its_wait(
    retry_after: str | None, seconds: float | None
) -> None:
    from ballast_ui.client import RateLimited

    def handler(_request: httpx.Request) -> httpx.Response:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return httpx.Response(
            429,
            headers=headers,
            json={
                "code": "rate_limited",
                "message": "too many",
                "details": {},
                "trace_id": None,
            },
        )

    with pytest.raises(RateLimited) as info:
        client(httpx.MockTransport(handler), token=None).login("u", "p")
    assert isinstance(info.value, ApiUnavailable)  # callers of the wider class see it
    assert info.value.retry_after == seconds


@pytest.mark.parametrize(
    ("retry_after", "text"),
    [
        (42.0, "try again in 42 s"),
        (0.2, "try again in 1 s"),
        (900.0, "try again in 15 min"),
        (None, "wait a few minutes"),
    ],
)
def test_the_sign_in_page_names_the_wait(retry_after: float | None, text: str) -> None:
    from ballast_ui.app import throttled_text

    said = throttled_text(retry_after)
    assert said.startswith("Too many failed sign-ins")
    assert text in said


def test_login_names_the_browser_address() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-forwarded-for"))
        return httpx.Response(401, json={"code": "x", "message": "m", "details": {}})

    api = client(httpx.MockTransport(handler), token=None)
    for address in ("203.0.113.9", None):
        with pytest.raises(AuthenticationError):
            api.login("u", "p", client_address=address)
    assert seen == ["203.0.113.9", None]


def test_no_browser_address_outside_a_session() -> None:
    from ballast_ui.state import browser_address

    assert browser_address() is None


def test_download_streams_an_export_and_maps_errors() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/missing/export"):
            return httpx.Response(
                404, json={"code": "not_found", "message": "dataset x not found"}
            )
        return httpx.Response(200, content=b"a,b\r\n" * 1000)

    api = client(httpx.MockTransport(handler))
    data = api.download("/datasets/d/export", params={"format": "csv"})
    assert data == b"a,b\r\n" * 1000
    assert seen[0].url.params["format"] == "csv"
    assert seen[0].headers["Authorization"] == "Bearer secret-token"
    with pytest.raises(NotFoundError, match="not found"):
        api.download("/datasets/missing/export")
    with pytest.raises(Exception, match="larger than") as err:
        api.download("/datasets/d/export", max_bytes=100)
    assert getattr(err.value, "status", None) == 413

    def down(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(ApiUnavailable):
        client(httpx.MockTransport(down)).download("/datasets/d/export")
