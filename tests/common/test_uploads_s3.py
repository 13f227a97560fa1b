"""`ballast_common.uploads` against a real S3-compatible server: how a file is cut, the
bucket's CORS rule for browsers, and the checksum of a browser's upload recorded when
the import reads it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from ballast_common import uploads
from ballast_common.config import AppConfig
from ballast_common.errors import NotFoundError, ValidationError
from ballast_common.storage import (
    S3_TARGET,
    S3ObjectStore,
    StorageCircuitOpenError,
    StorageUnavailableError,
    download,
    open_store,
)
from ballast_testing.s3 import S3Proxy, S3Server

MIB = 1024 * 1024


def _store(s3_server: S3Server, bucket: str) -> S3ObjectStore:
    store = open_store(
        AppConfig(
            s3={
                "endpoint_url": s3_server.endpoint_url,
                "bucket": bucket,
                "region": s3_server.region,
                "access_key_id": s3_server.access_key,
                "secret_access_key": s3_server.secret_key,
            }
        )
    )
    assert isinstance(store, S3ObjectStore)
    return store


@pytest.mark.parametrize(
    ("size", "part", "expected"),
    [
        (1, 8 * MIB, (8 * MIB, 1)),
        (8 * MIB, 8 * MIB, (8 * MIB, 1)),
        (8 * MIB + 1, 8 * MIB, (8 * MIB, 2)),
        (10 * MIB, 1, (5 * MIB, 2)),  # never below S3's 5 MiB
        # 10,000 parts at most: larger parts, a whole number of MiB.
        (100_000 * MIB, 8 * MIB, (10 * MIB, 10_000)),
        (100_000 * MIB + 1, 8 * MIB, (11 * MIB, 9091)),
    ],
)
def test_plan(size: int, part: int, expected: tuple[int, int]) -> None:
    got = uploads.plan(size, part)
    assert (got.part_size, got.part_count) == expected
    assert got.part_count <= uploads.MAX_PARTS
    last = uploads.part_size_of(got.part_count, size, got.part_size)
    assert 0 < last <= got.part_size


@pytest.mark.parametrize("size", [0, -1, 6 * 1024**4])
def test_plan_refuses(size: int) -> None:
    with pytest.raises(ValidationError):
        uploads.plan(size, 8 * MIB)


@pytest.mark.integration
def test_browsers_of_the_ui_may_put_parts(s3_server: S3Server, s3_bucket: str) -> None:
    store = _store(s3_server, s3_bucket)
    uploads.configure_cors(store, ["http://ui.example:8501"])
    uploads.configure_cors(store, ["http://ui.example:8501"])  # replaces, no duplicate
    rules = store.client.get_bucket_cors(Bucket=s3_bucket)["CORSRules"]
    assert len(rules) == 1
    assert rules[0]["AllowedMethods"] == ["PUT"]
    assert "ETag" in rules[0]["ExposeHeaders"]
    upload_id = uploads.start(store, "x/y.csv", "text/csv")
    url = uploads.presign_part(
        uploads.presigner(
            AppConfig(
                s3={
                    "endpoint_url": s3_server.endpoint_url,
                    "bucket": s3_bucket,
                    "region": s3_server.region,
                    "access_key_id": s3_server.access_key,
                    "secret_access_key": s3_server.secret_key,
                }
            )
        ),
        s3_bucket,
        "x/y.csv",
        upload_id,
        1,
        8,
        60,
    )
    preflight = httpx.options(
        url,
        headers={
            "Origin": "http://ui.example:8501",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "http://ui.example:8501"
    put = httpx.put(
        url, content=b"a,b\n1,2\n", headers={"Origin": "http://ui.example:8501"}
    )
    assert put.status_code == 200
    assert "etag" in put.headers.get("access-control-expose-headers", "").lower()
    uploads.abort(store, "x/y.csv", upload_id)
    uploads.abort(store, "x/y.csv", upload_id)  # gone already: not an error


@pytest.mark.integration
def test_the_checksum_is_recorded_when_the_upload_is_read(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = _store(s3_server, s3_bucket)
    data = b"x,y\n" + b"1,2\n" * (3 * MIB)
    key = "datasets/d/source.csv"
    upload_id = uploads.start(store, key, "text/csv")
    etags = []
    for number, start in enumerate(range(0, len(data), 5 * MIB), 1):
        answer = store.client.upload_part(
            Bucket=s3_bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data[start : start + 5 * MIB],
        )
        etags.append(uploads.Part(number, 0, uploads.etag(answer["ETag"])))
    assert uploads.complete(store, key, upload_id, etags) == len(data)
    assert store.stat(key).sha256 == ""  # a browser's upload: no checksum yet

    info = uploads.fetch(store, key, tmp_path / "a")
    sha = hashlib.sha256(data).hexdigest()
    assert (info.sha256, info.size) == (sha, len(data))
    assert (tmp_path / "a").read_bytes() == data
    # Recorded with the object: later reads verify it.
    assert store.stat(key).sha256 == sha
    assert download(store, key, tmp_path / "b").sha256 == sha
    assert uploads.fetch(store, key, tmp_path / "c").sha256 == sha


def test_direct_upload_requests_go_through_the_store_breaker(
    s3_server: S3Server, s3_bucket: str, s3_proxy: S3Proxy
) -> None:
    """The multipart requests are operations of the outbound target "s3" like the
    store's own: a store that is down opens the breaker, which then answers at once;
    an upload gone from the store is an answer (404), not a failure."""
    up = S3ObjectStore(s3_server.client(), s3_bucket)
    with pytest.raises(NotFoundError):
        uploads.list_parts(up, "gone.csv", "no-such-upload")
    assert up.outbound.breaker(S3_TARGET).fail_counter == 0
    down = S3ObjectStore(
        s3_server.client(endpoint_url=s3_proxy.endpoint_url), s3_bucket
    )
    s3_proxy.cut()
    for _ in range(down.outbound.settings(S3_TARGET).breaker_fail_max):
        with pytest.raises(StorageUnavailableError, match="unreachable"):
            uploads.start(down, "direct.csv", "text/csv")
    with pytest.raises(StorageCircuitOpenError):
        uploads.start(down, "direct.csv", "text/csv")
