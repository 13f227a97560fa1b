"""The ui's upload routes (``/_ballast/uploads…``) keep nothing in the process: a direct
upload begun on one ui replica is resumed, signed and completed on another. A real api
process (SQLite, S3 storage) behind two separate instances of the ui's routes; the parts
go from the "browser" (httpx) straight to the S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ballast_testing.api import api_process
from ballast_testing.s3 import S3Server
from ballast_ui import server, uploads
from ballast_ui.auth import COOKIE_NAME

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
DATA = b"x,y\n" + b"".join(b"%d,%d\n" % (i, i % 7) for i in range(1_200_000))


@pytest.fixture(scope="module")
def live_api(
    seeded_dbs: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    s3_server: S3Server,
) -> Iterator[str]:
    bucket = s3_server.create_bucket()
    data: Path = tmp_path_factory.mktemp("upload-api") / "data"
    env = {
        "BALLAST_PATHS__DATA_DIR": str(data),
        "BALLAST_S3__ENDPOINT_URL": s3_server.endpoint_url,
        "BALLAST_S3__BUCKET": bucket,
        "BALLAST_S3__REGION": s3_server.region,
        "BALLAST_S3__ACCESS_KEY_ID": s3_server.access_key,
        "BALLAST_S3__SECRET_ACCESS_KEY": s3_server.secret_key,
        "BALLAST_DATASETS__UPLOAD_PART_MB": "5",
    }
    with api_process(seeded_dbs["sqlite"], env=env) as base:
        yield base


def _replica(token: str | None) -> TestClient:
    client = TestClient(Starlette(routes=server.ROUTES))
    if token:
        client.cookies.set(COOKIE_NAME, token)
    return client


@pytest.fixture
def replicas(
    live_api: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, TestClient]]:
    monkeypatch.setenv("BALLAST_API_URL", live_api)
    resp = httpx.post(
        f"{live_api}/v1/sessions",
        json={"username": "editor", "password": "editor-demo-pass"},
        timeout=30,
    )
    resp.raise_for_status()
    token = str(resp.json()["token"])
    yield _replica(token), _replica(token)
    uploads.close()


def test_an_upload_moves_between_replicas(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    created = a.post(
        "/_ballast/uploads",
        json={"filename": "rows.csv", "size": len(DATA), "name": "Rows"},
    )
    assert created.status_code == 200, created.text
    upload = created.json()
    assert upload["part_count"] == -(-len(DATA) // (5 * MIB))
    base = f"/_ballast/uploads/{upload['id']}"

    def send(numbers: list[int], via: TestClient) -> dict[int, str]:
        signed = via.post(f"{base}/parts", json={"numbers": numbers})
        assert signed.status_code == 200, signed.text
        etags = {}
        for part in signed.json()["urls"]:
            start = (part["number"] - 1) * upload["part_size"]
            put = httpx.put(
                part["url"], content=DATA[start : start + part["size"]], timeout=30
            )
            assert put.status_code == 200
            etags[part["number"]] = put.headers["ETag"]
        return etags

    first = send([1], a)
    # "Refresh" on the other replica: it learns from the store which parts exist.
    held = b.get(base)
    assert [p["number"] for p in held.json()["parts"]] == [1]
    rest = send(list(range(2, upload["part_count"] + 1)), b)
    parts = [{"number": n, "etag": e} for n, e in sorted({**first, **rest}.items())]
    done = a.post(f"{base}/complete", json={"parts": parts})
    assert done.status_code == 200, done.text
    assert done.json()["dataset"]["size_bytes"] == len(DATA)
    assert done.json()["dataset"]["name"] == "Rows"
    assert b.get(base).json()["state"] == "COMPLETED"


def test_refusals_are_clear(replicas: tuple[TestClient, TestClient]) -> None:
    a, _ = replicas
    anonymous = _replica(None)
    assert (
        anonymous.post("/_ballast/uploads", json={"filename": "a.csv", "size": 1})
    ).status_code == 401
    bad = a.post("/_ballast/uploads", json={"filename": "a\x00.csv", "size": 0})
    assert bad.status_code == 422
    assert "filename" in bad.json()["message"]
    assert "size" in bad.json()["message"]
    form = a.post("/_ballast/uploads", data={"filename": "a.csv", "size": "1"})
    assert form.status_code == 415
    assert a.get("/_ballast/uploads/not-an-id").status_code == 404
    missing = a.get("/_ballast/uploads/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    created = a.post("/_ballast/uploads", json={"filename": "a.csv", "size": 10})
    upload_id = created.json()["id"]
    beyond = a.post(f"/_ballast/uploads/{upload_id}/parts", json={"numbers": [2]})
    assert beyond.status_code == 422
    assert "no part 2" in beyond.json()["message"]
    assert a.delete(f"/_ballast/uploads/{upload_id}").status_code == 204


@pytest.mark.parametrize("key", ["status", "code", "message", "details"])
def test_an_api_error_whose_details_name_any_key_is_passed_through(key: str) -> None:
    # The api's details may hold any key (a 409 "not ready" names the upload's
    # ``status``): they are the answer's details, never keyword arguments.
    from starlette.requests import Request
    from starlette.routing import Route

    from ballast_common.errors import AppError

    def refuse(_api: object) -> None:
        raise AppError("not ready", "not_ready", {key: "PENDING", "n": 1}, 409)

    async def route(request: Request) -> object:
        return await uploads._forward(request, refuse)

    app = Starlette(routes=[Route("/x", route)])
    with TestClient(app, cookies={COOKIE_NAME: "token"}) as client:
        answer = client.get("/x")
    assert answer.status_code == 409
    assert answer.json() == {
        "code": "not_ready",
        "message": "not ready",
        "details": {key: "PENDING", "n": 1},
    }
    assert answer.headers["cache-control"] == "no-store"
