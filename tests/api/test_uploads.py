"""Direct uploads (``/v1/uploads``) against a real S3-compatible server: a client PUTs
the parts to presigned URLs (plain httpx, as a browser would), resumes from the parts
the store lists, completes into a dataset and its import job, or aborts; strangers and
bad input are refused with a clear 4xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ballast_api.main import create_app
from ballast_common.db import DB, run_tx
from ballast_common.seed import seed_demo
from ballast_common.storage import open_store
from ballast_common.uploads import s3_store
from ballast_testing.s3 import S3Server
from tests.api.authz_world import make_user
from tests.api.conftest import PASSWORDS, Api, _reset, make_config, open_session
from tests.api.test_jobs import sent

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# Three parts of 5 MiB (the smallest S3 allows), the last one short.
DATA = (bytes(range(256)) * (10 * MIB // 256 + 40))[: 10 * MIB + 12345]


@pytest.fixture
def s3api(
    backend: str,
    seeded_dbs: dict[str, str],
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
) -> Iterator[Api]:
    """The api with its objects in an S3 bucket, 5 MiB parts, at most 32 MiB a file."""
    db = DB(seeded_dbs[backend])
    _reset(db)
    run_tx(seed_demo, db=db)
    make_user(db, "editor2", "editor")
    config = make_config(
        tmp_path,
        s3={
            "endpoint_url": s3_server.endpoint_url,
            "bucket": s3_bucket,
            "region": s3_server.region,
            "access_key_id": s3_server.access_key,
            "secret_access_key": s3_server.secret_key,
        },
        datasets={"upload_part_mb": 5, "max_direct_upload_mb": 32},
    )
    with TestClient(
        create_app(config=config, db=db), raise_server_exceptions=False
    ) as client:
        users = [*PASSWORDS, "editor2"]
        yield Api(client, db, config, {u: open_session(db, config, u) for u in users})
        client.portal.call(db.adispose)
    db.dispose()


def begin(api: Api, size: int = len(DATA), user: str = "editor", **body: Any) -> Any:
    return api.client.post(
        "/v1/uploads",
        json={"filename": "big.csv", "size": size, "content_type": "text/csv", **body},
        headers=api.h(user),
    )


def urls(api: Api, upload_id: str, numbers: list[int], user: str = "editor") -> Any:
    return api.client.post(
        f"/v1/uploads/{upload_id}/parts", json={"numbers": numbers}, headers=api.h(user)
    )


def put_parts(api: Api, upload_id: str, numbers: list[int]) -> dict[int, str]:
    """PUT the parts to their presigned URLs (no credentials): number -> ETag."""
    answer = urls(api, upload_id, numbers)
    assert answer.status_code == 200, answer.text
    etags = {}
    for part in answer.json()["urls"]:
        start = (part["number"] - 1) * 5 * MIB
        chunk = DATA[start : start + part["size"]]
        assert len(chunk) == part["size"]
        resp = httpx.put(part["url"], content=chunk, timeout=30)
        assert resp.status_code == 200, resp.text
        etags[part["number"]] = resp.headers["ETag"]
    return etags


def finish(
    api: Api, upload_id: str, etags: dict[int, str], user: str = "editor"
) -> Any:
    parts = [{"number": n, "etag": etags[n]} for n in sorted(etags)]
    return api.client.post(
        f"/v1/uploads/{upload_id}/complete", json={"parts": parts}, headers=api.h(user)
    )


def bucket(api: Api) -> Any:
    """The api's bucket's boto3 client."""
    return s3_store(open_store(api.config)).client


def stored(api: Api, key: str) -> bytes:
    answer = bucket(api).get_object(Bucket=api.config.s3.bucket, Key=key)
    return bytes(answer["Body"].read())


def test_upload_in_parts_then_import(s3api: Api) -> None:
    created = begin(s3api)
    assert created.status_code == 201, created.text
    upload = created.json()
    assert (upload["part_size"], upload["part_count"], upload["state"]) == (
        5 * MIB,
        3,
        "OPEN",
    )
    assert (upload["name"], upload["format"]) == ("big", "csv")
    # Parts may go in any order (a browser sends a few at once).
    etags = put_parts(s3api, upload["id"], [3, 1, 2])
    listed = s3api.client.get(f"/v1/uploads/{upload['id']}", headers=s3api.h("editor"))
    assert [(p["number"], p["size"]) for p in listed.json()["parts"]] == [
        (1, 5 * MIB),
        (2, 5 * MIB),
        (3, len(DATA) - 10 * MIB),
    ]

    done = finish(s3api, upload["id"], etags)
    assert done.status_code == 202, done.text
    dataset, job = done.json()["dataset"], done.json()["job"]
    assert dataset["id"] == upload["dataset_id"]
    assert (dataset["status"], dataset["size_bytes"], dataset["filename"]) == (
        "PENDING",
        len(DATA),
        "big.csv",
    )
    assert job["name"] == "datasets.import"
    assert job["kwargs"] == {"dataset_id": dataset["id"]}
    assert [m["queue"] for m in sent(s3api)] == ["imports"]
    assert stored(s3api, f"datasets/{dataset['id']}/source.csv") == DATA
    # Completing again (the first answer was lost) answers the same import, once.
    again = finish(s3api, upload["id"], etags)
    assert (again.status_code, again.json()["job"]["id"]) == (202, job["id"])
    assert len(sent(s3api)) == 1
    after = s3api.client.get(f"/v1/uploads/{upload['id']}", headers=s3api.h("editor"))
    assert (after.json()["state"], after.json()["job_id"]) == ("COMPLETED", job["id"])
    assert urls(s3api, upload["id"], [1]).status_code == 409


def test_resume_after_some_parts(s3api: Api) -> None:
    upload = begin(s3api).json()
    first = put_parts(s3api, upload["id"], [1])
    # A refreshed browser asks which parts the store holds, then sends the rest.
    held = s3api.client.get(f"/v1/uploads/{upload['id']}", headers=s3api.h("editor"))
    assert [(p["number"], p["etag"].strip('"')) for p in held.json()["parts"]] == [
        (1, first[1].strip('"'))
    ]
    missing = finish(s3api, upload["id"], first)
    assert missing.status_code == 422
    assert "missing: 2, 3" in missing.json()["message"]
    rest = put_parts(s3api, upload["id"], [2, 3])
    done = finish(s3api, upload["id"], {**first, **rest})
    assert done.status_code == 202, done.text
    key = f"datasets/{upload['dataset_id']}/source.csv"
    assert stored(s3api, key) == DATA


def test_only_the_uploader_or_an_admin(s3api: Api) -> None:
    upload = begin(s3api).json()
    path = f"/v1/uploads/{upload['id']}"
    for user in ("editor2",):
        assert s3api.client.get(path, headers=s3api.h(user)).status_code == 404
        assert urls(s3api, upload["id"], [1], user=user).status_code == 404
        assert finish(s3api, upload["id"], {1: "x"}, user=user).status_code == 404
        assert s3api.client.delete(path, headers=s3api.h(user)).status_code == 404
    # A reader may not upload at all.
    assert begin(s3api, user="viewer").status_code == 403
    assert s3api.client.get(path, headers=s3api.h("viewer")).status_code == 403
    assert s3api.client.get(path, headers=s3api.h("admin")).status_code == 200
    assert s3api.client.get(path).status_code == 401
    # Into a project: only one I may change.
    private = s3api.client.post(
        "/v1/projects", json={"name": "Mine"}, headers=s3api.h("editor")
    ).json()
    assert begin(s3api, user="editor2", project_id=private["id"]).status_code == 404
    assert begin(s3api, project_id=str(uuid.uuid4())).status_code == 404
    into = begin(s3api, project_id=private["id"])
    assert into.status_code == 201
    assert into.json()["project_id"] == private["id"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"size": 0}, 422, "size"),
        ({"size": -5}, 422, "size"),
        ({"size": 33 * MIB}, 413, "larger than"),
        ({"size": 10**18}, 422, "size"),
        ({"filename": "a\x00.csv"}, 422, "filename"),
        ({"filename": "../etc/passwd.csv"}, 422, "filename"),
        ({"filename": "dir\\a.csv"}, 422, "filename"),
        ({"filename": ""}, 422, "filename"),
        ({"filename": "x" * 300 + ".csv"}, 422, "filename"),
        ({"filename": "notes.doc"}, 422, "cannot tell the format"),
        ({"name": "a\nb"}, 422, "name"),
        ({"content_type": "text/csv\r\nX-Evil: 1"}, 422, "content_type"),
        ({"format": "exe"}, 422, "format"),
        ({"size": "many"}, 422, "size"),
        ({"extra": 1}, 422, "extra"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    s3api: Api, body: dict[str, Any], status: int, words: str
) -> None:
    resp = begin(s3api, **body)
    assert resp.status_code == status, resp.text
    assert words in resp.text


def test_bad_parts_are_refused(s3api: Api) -> None:
    upload = begin(s3api).json()
    numbers: list[int]
    for numbers in ([0], [4], [-1], [10_001], [], list(range(1, 102))):
        resp = urls(s3api, upload["id"], numbers)
        assert resp.status_code == 422, (numbers, resp.text)
    assert "no part 4" in urls(s3api, upload["id"], [1, 4]).json()["message"]
    etags = put_parts(s3api, upload["id"], [1, 2, 3])
    complete = f"/v1/uploads/{upload['id']}/complete"
    wrong = finish(s3api, upload["id"], {**etags, 2: '"0123456789abcdef"'})
    assert wrong.status_code == 422
    assert "part 2's ETag does not match" in wrong.json()["message"]
    twice = [{"number": 1, "etag": etags[1]}] * 2 + [{"number": 3, "etag": etags[3]}]
    resp = s3api.client.post(complete, json={"parts": twice}, headers=s3api.h("editor"))
    assert resp.status_code == 422
    body: dict[str, Any]
    for body in ({"parts": []}, {"parts": [{"number": 1}]}, {}, {"parts": "x"}):
        resp = s3api.client.post(complete, json=body, headers=s3api.h("editor"))
        assert resp.status_code == 422, resp.text
    assert (
        s3api.client.get(
            f"/v1/uploads/{uuid.uuid4()}", headers=s3api.h("editor")
        ).status_code
        == 404
    )
    assert (
        s3api.client.get("/v1/uploads/nope", headers=s3api.h("editor")).status_code
        == 422
    )
    # Nothing was imported; the upload is still open and completes with the right ETags.
    assert sent(s3api) == []
    assert finish(s3api, upload["id"], etags).status_code == 202


def test_a_part_of_the_wrong_size_is_refused(s3api: Api) -> None:
    upload = begin(s3api, size=5 * MIB + 10).json()
    [part] = urls(s3api, upload["id"], [2]).json()["urls"]
    assert part["size"] == 10
    # The part's size is signed into its URL: the store refuses another body.
    refused = httpx.put(part["url"], content=b"0123456789-too-long", timeout=30)
    assert refused.status_code == 403
    # Should a part of another size get there anyway, completing refuses it.
    etag = bucket(s3api).upload_part(
        Bucket=s3api.config.s3.bucket,
        Key=f"datasets/{upload['dataset_id']}/source.csv",
        UploadId=_s3_upload_id(s3api, upload["id"]),
        PartNumber=2,
        Body=b"0123456789-too-long",
    )["ETag"]
    first = put_parts(s3api, upload["id"], [1])
    resp = finish(s3api, upload["id"], {1: first[1], 2: etag})
    assert resp.status_code == 422
    assert "part 2 has 19 bytes, not 10" in resp.json()["message"]


def _s3_upload_id(api: Api, upload_id: str) -> str:
    [(s3_id,)] = api.sql(
        "SELECT s3_upload_id FROM uploads WHERE id = :id",
        id=uuid.UUID(upload_id).hex if api.db.is_sqlite else upload_id,
    )
    return str(s3_id)


def test_abort(s3api: Api) -> None:
    upload = begin(s3api).json()
    etags = put_parts(s3api, upload["id"], [1])
    path = f"/v1/uploads/{upload['id']}"
    assert s3api.client.delete(path, headers=s3api.h("editor")).status_code == 204
    assert (
        s3api.client.get(path, headers=s3api.h("editor")).json()["state"] == "ABORTED"
    )
    assert s3api.client.delete(path, headers=s3api.h("editor")).status_code == 204
    assert urls(s3api, upload["id"], [2]).status_code == 409
    assert finish(s3api, upload["id"], etags).status_code == 409
    client = bucket(s3api)
    assert (
        client.list_multipart_uploads(Bucket=s3api.config.s3.bucket).get("Uploads", [])
        == []
    )
    # A completed upload cannot be aborted.
    other = begin(s3api, size=100).json()
    assert finish(s3api, other["id"], put_small(s3api, other["id"])).status_code == 202
    gone = s3api.client.delete(f"/v1/uploads/{other['id']}", headers=s3api.h("editor"))
    assert gone.status_code == 409


def put_small(api: Api, upload_id: str) -> dict[int, str]:
    [part] = urls(api, upload_id, [1]).json()["urls"]
    resp = httpx.put(part["url"], content=DATA[: part["size"]], timeout=30)
    return {1: resp.headers["ETag"]}


def test_the_local_store_says_to_upload_through_the_api(api: Api) -> None:
    resp = api.client.post(
        "/v1/uploads", json={"filename": "a.csv", "size": 10}, headers=api.h("editor")
    )
    assert resp.status_code == 409
    assert resp.json()["code"] == "direct_upload_unavailable"


def test_no_longer_allowed_into_the_project_leaves_no_file(s3api: Api) -> None:
    project = s3api.client.post(
        "/v1/projects", json={"name": "Shared"}, headers=s3api.h("editor")
    ).json()
    members = f"/v1/projects/{project['id']}/members"
    member = s3api.client.post(
        members,
        json={"username": "editor2", "role": "editor"},
        headers=s3api.h("editor"),
    )
    assert member.status_code == 200, member.text
    upload = begin(s3api, size=100, user="editor2", project_id=project["id"])
    assert upload.status_code == 201, upload.text
    [part] = urls(s3api, upload.json()["id"], [1], user="editor2").json()["urls"]
    etag = httpx.put(part["url"], content=DATA[:100], timeout=30).headers["ETag"]
    # The owner stops sharing before the upload completes.
    gone = s3api.client.delete(
        f"{members}/{member.json()['user_id']}", headers=s3api.h("editor")
    )
    assert gone.status_code == 204
    refused = finish(s3api, upload.json()["id"], {1: etag}, user="editor2")
    assert refused.status_code == 404
    key = f"datasets/{upload.json()['dataset_id']}/"
    listed = bucket(s3api).list_objects_v2(Bucket=s3api.config.s3.bucket, Prefix=key)
    assert listed.get("KeyCount", 0) == 0
    assert sent(s3api) == []


def test_an_abandoned_upload_is_aborted_by_its_owners_next_one(s3api: Api) -> None:
    old = begin(s3api).json()
    put_parts(s3api, old["id"], [1])
    recent = begin(s3api).json()
    # The first was begun two days ago and never finished.
    s3api.sql(
        "UPDATE uploads SET created_at = :at WHERE id = :id",
        at=datetime.now(UTC) - timedelta(days=2),
        id=uuid.UUID(old["id"]).hex if s3api.db.is_sqlite else old["id"],
    )
    assert begin(s3api, user="editor2").status_code == 201  # another user's: untouched
    path = f"/v1/uploads/{old['id']}"
    assert s3api.client.get(path, headers=s3api.h("editor")).json()["state"] == "OPEN"
    assert begin(s3api).status_code == 201
    assert (
        s3api.client.get(path, headers=s3api.h("editor")).json()["state"] == "ABORTED"
    )
    recent_path = f"/v1/uploads/{recent['id']}"
    assert s3api.client.get(recent_path, headers=s3api.h("editor")).json()["state"] == (
        "OPEN"
    )
    pending = bucket(s3api).list_multipart_uploads(Bucket=s3api.config.s3.bucket)
    keys = {u["Key"] for u in pending.get("Uploads", [])}
    assert f"datasets/{old['dataset_id']}/source.csv" not in keys
    assert f"datasets/{recent['dataset_id']}/source.csv" in keys
