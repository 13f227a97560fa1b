"""Object storage against a real S3-compatible server (Ceph radosgw, see ballast_testing/s3.py).

The interface tests run against both implementations (`LocalObjectStore` and
`S3ObjectStore`), so the embedded default and production behave the same. The rest
covers what only S3 has: multipart uploads, server-side checksums, server errors and a
connection cut in the middle of an upload.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from ballast_common.config import AppConfig
from ballast_common.errors import NotFoundError, TransientError, ValidationError
from ballast_common.storage import (
    ABORT_INCOMPLETE_DAYS,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StorageError,
    StorageUnavailableError,
    TooLargeError,
    download,
    get_bytes,
    open_store,
    put_bytes,
)
from ballast_testing.s3 import S3Proxy, S3Server

MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part S3 allows

pytestmark = pytest.mark.integration


def _s3_config(
    server: S3Server, bucket: str, endpoint_url: str | None = None
) -> AppConfig:
    return AppConfig(
        s3={
            "endpoint_url": endpoint_url or server.endpoint_url,
            "bucket": bucket,
            "region": server.region,
            "access_key_id": server.access_key,
            "secret_access_key": server.secret_key,
        }
    )


@pytest.fixture
def s3_store(s3_server: S3Server, s3_bucket: str) -> S3ObjectStore:
    store = open_store(_s3_config(s3_server, s3_bucket))
    assert isinstance(store, S3ObjectStore)
    # Small parts so multipart uploads stay small and quick.
    return S3ObjectStore(store.client, s3_bucket, part_size=PART)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
    else:
        yield request.getfixturevalue("s3_store")


# --------------------------------------------------------------------------- one interface


def test_put_get_stat_list_delete(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    body = b"x,y\n1,2\n"
    info = put_bytes(store, "datasets/a/source.csv", body, content_type="text/csv")
    assert (info.key, info.size, info.content_type) == (
        "datasets/a/source.csv",
        8,
        "text/csv",
    )
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    assert store.stat("datasets/a/source.csv") == info
    assert get_bytes(store, "datasets/a/source.csv") == body
    put_bytes(store, "datasets/b/source.csv", b"")
    put_bytes(store, "other/c.bin", b"c")
    assert store.stat("datasets/b/source.csv").size == 0
    assert store.list() == [
        "datasets/a/source.csv",
        "datasets/b/source.csv",
        "other/c.bin",
    ]
    assert store.list("datasets/a") == ["datasets/a/source.csv"]
    assert store.list("nothing/") == []
    assert store.exists("datasets/a/source.csv")
    store.delete("datasets/a/source.csv")
    store.delete("datasets/a/source.csv")  # deleting a missing object is fine
    assert not store.exists("datasets/a/source.csv")
    with pytest.raises(NotFoundError, match=r"datasets/a/source\.csv"):
        store.stat("datasets/a/source.csv")
    with pytest.raises(NotFoundError, match="not found"):
        store.open("datasets/a/source.csv")


def test_replacing_an_object_replaces_data_and_metadata(store: ObjectStore) -> None:
    put_bytes(store, "k.json", b'{"a": 1}', content_type="application/json")
    info = put_bytes(store, "k.json", b"second", content_type="text/plain")
    assert get_bytes(store, "k.json") == b"second"
    assert store.stat("k.json") == info
    assert store.list() == ["k.json"]


def test_large_object_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    # Three parts on S3 (5 + 5 + 1 MiB and a few bytes); one streamed file locally.
    data = os.urandom(2 * PART + MIB + 17)
    info = store.put("big/blob.bin", io.BytesIO(data))
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert store.stat("big/blob.bin") == info
    target = tmp_path / "copy.bin"
    assert download(store, "big/blob.bin", target) == info
    assert target.read_bytes() == data
    # No temporary keys or parts remain visible.
    assert store.list() == ["big/blob.bin"]


def test_exactly_one_part_is_a_single_put(store: ObjectStore) -> None:
    data = os.urandom(PART)
    info = store.put("edge.bin", io.BytesIO(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert get_bytes(store, "edge.bin") == data


def test_too_large_stores_nothing_and_keeps_the_old_object(store: ObjectStore) -> None:
    put_bytes(store, "k.bin", b"old")
    with pytest.raises(TooLargeError) as err:
        store.put("k.bin", io.BytesIO(b"x" * (PART + 10)), max_bytes=PART)
    assert err.value.status == 413
    # Caught after several parts were uploaded: the multipart upload is aborted.
    with pytest.raises(TooLargeError):
        store.put("new.bin", io.BytesIO(os.urandom(2 * PART + 1)), max_bytes=PART + MIB)
    assert get_bytes(store, "k.bin") == b"old"
    assert store.list() == ["k.bin"]


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/../b", "", "a b"])
def test_unsafe_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValidationError, match="invalid object key"):
        put_bytes(store, key, b"x")
    with pytest.raises(ValidationError, match="invalid object key"):
        store.stat(key)


# --------------------------------------------------------------------------- S3 only


def test_multipart_upload_leaves_no_parts_and_records_the_checksum(
    s3_store: S3ObjectStore,
) -> None:
    data = os.urandom(PART + 123)
    s3_store.put("mp.bin", io.BytesIO(data), content_type="application/x-test")
    client, bucket = s3_store.client, s3_store.bucket
    head = client.head_object(Bucket=bucket, Key="mp.bin")
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert head["ContentType"] == "application/x-test"
    assert head["ContentLength"] == len(data)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    raw = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert raw == ["mp.bin"]


class _Stream(io.RawIOBase):
    """A pipe-like input: readable once, not seekable (a pg_dump's output, say)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _calls(store: S3ObjectStore) -> Counter[str]:
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    store.client.meta.events.register("before-call.s3", count)
    return calls


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "stream"])
def test_a_multipart_upload_writes_its_key_once(
    s3_store: S3ObjectStore, seekable: bool, tmp_path: Path
) -> None:
    data = os.urandom(2 * PART + 7)
    calls = _calls(s3_store)
    source: IO[bytes] = io.BytesIO(data) if seekable else _Stream(data)  # type: ignore[assignment]
    info = s3_store.put("once.bin", source)
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    # Parts straight to the key: no temporary object, no server-side copy (S3 refuses
    # copies over 5 GiB), nothing deleted afterwards.
    assert calls["CreateMultipartUpload"] == 1
    assert calls["UploadPart"] == 3
    assert calls["CompleteMultipartUpload"] == 1
    assert calls["CopyObject"] == calls["DeleteObject"] == calls["PutObject"] == 0
    assert s3_store.stat("once.bin") == info
    assert download(s3_store, "once.bin", tmp_path / "once.bin") == info
    assert (tmp_path / "once.bin").read_bytes() == data


def test_a_small_stream_is_one_put_with_its_checksum_tag(
    s3_store: S3ObjectStore,
) -> None:
    calls = _calls(s3_store)
    info = s3_store.put("small.bin", _Stream(b"payload"))  # type: ignore[arg-type]
    assert calls["PutObject"] == 1
    assert calls["CreateMultipartUpload"] == 0
    assert s3_store.stat("small.bin").sha256 == hashlib.sha256(b"payload").hexdigest()
    assert info.sha256 == hashlib.sha256(b"payload").hexdigest()


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "stream"])
def test_an_upload_over_its_limit_leaves_nothing_behind(
    s3_store: S3ObjectStore, seekable: bool
) -> None:
    data = os.urandom(3 * PART)
    source: IO[bytes] = io.BytesIO(data) if seekable else _Stream(data)  # type: ignore[assignment]
    calls = _calls(s3_store)
    with pytest.raises(TooLargeError):
        s3_store.put("big.bin", source, max_bytes=PART + 1)
    if seekable:  # counted before anything is sent
        assert sum(calls.values()) == 0
    assert s3_store.list() == []
    uploads = s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket)
    assert uploads.get("Uploads", []) == []


def test_only_the_hashed_bytes_of_a_growing_file_are_uploaded(
    s3_store: S3ObjectStore, tmp_path: Path
) -> None:
    """A file appended to while it is uploaded: the object holds exactly the bytes its
    checksum covers, never a mix."""
    path = tmp_path / "growing.bin"
    path.write_bytes(b"a" * 1000)

    class Growing(io.FileIO):
        def seek(self, offset: int, whence: int = 0) -> int:
            # The hash pass is over: more bytes arrive before the upload reads.
            with path.open("ab") as more:
                more.write(b"b" * 10)
            return super().seek(offset, whence)

    with Growing(path, "rb") as fh:
        info = s3_store.put("grow.bin", fh)  # type: ignore[arg-type]
    assert info.size == 1000
    assert get_bytes(s3_store, "grow.bin") == b"a" * 1000
    assert info.sha256 == hashlib.sha256(b"a" * 1000).hexdigest()


def test_the_server_rejects_a_part_whose_bytes_do_not_match(
    s3_store: S3ObjectStore,
) -> None:
    # Content-MD5 is what every S3-compatible server verifies; the store sends it with
    # every request, so a body damaged on the way is refused, not stored.
    client, bucket = s3_store.client, s3_store.bucket
    with pytest.raises(client.exceptions.ClientError, match=r"BadDigest|InvalidDigest"):
        client.put_object(
            Bucket=bucket,
            Key="bad.bin",
            Body=b"payload",
            ContentMD5=base64.b64encode(
                hashlib.md5(b"other payload", usedforsecurity=False).digest()
            ).decode(),
        )
    assert s3_store.list() == []


def test_a_corrupt_object_is_refused_on_download(
    s3_store: S3ObjectStore, tmp_path: Path
) -> None:
    put_bytes(s3_store, "d.bin", b"payload")
    # Rewrite the bytes behind the store's back, keeping the recorded checksum.
    s3_store.client.put_object(
        Bucket=s3_store.bucket,
        Key="d.bin",
        Body=b"tampered",
        Metadata={"sha256": hashlib.sha256(b"payload").hexdigest()},
    )
    with pytest.raises(StorageError, match="corrupt"):
        download(s3_store, "d.bin", tmp_path / "d.bin")
    assert not (tmp_path / "d.bin").exists()


def test_missing_bucket_is_a_clear_storage_error(s3_server: S3Server) -> None:
    store = S3ObjectStore(s3_server.client(), "ballast-no-such-bucket", part_size=PART)
    with pytest.raises(StorageError, match=r"ballast-no-such-bucket/k: NoSuchBucket"):
        put_bytes(store, "k", b"x")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        store.list()


def test_wrong_credentials_are_a_clear_storage_error(
    s3_server: S3Server, s3_bucket: str
) -> None:
    wrong = S3Server(s3_server.endpoint_url, s3_server.access_key, "w" * 40)
    store = open_store(_s3_config(wrong, s3_bucket))
    with pytest.raises(StorageError, match="SignatureDoesNotMatch") as err:
        put_bytes(store, "k", b"x")
    assert not isinstance(err.value, TransientError)


def test_ensure_bucket_creates_once_with_a_cleanup_rule(s3_server: S3Server) -> None:
    name = s3_server.create_bucket()
    s3_server.delete_bucket(name)
    store = S3ObjectStore(s3_server.client(), name, part_size=PART)
    store.ensure_bucket()
    store.ensure_bucket()
    rules = store.client.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert [
        r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for r in rules
    ] == [ABORT_INCOMPLETE_DAYS]
    put_bytes(store, "k", b"x")
    assert store.list() == ["k"]
    s3_server.delete_bucket(name)


# --------------------------------------------------------------------------- faults


def _read_all(stream: IO[bytes]) -> int:
    total = 0
    while chunk := stream.read(256 * 1024):
        total += len(chunk)
    return total


@pytest.fixture
def cut_store(s3_server: S3Server, s3_bucket: str, s3_proxy: S3Proxy) -> S3ObjectStore:
    """A store talking through the cuttable proxy, without client-side retries."""
    client = s3_server.client(endpoint_url=s3_proxy.endpoint_url)
    return S3ObjectStore(client, s3_bucket, part_size=PART)


def test_unreachable_server_is_transient(
    cut_store: S3ObjectStore, s3_proxy: S3Proxy
) -> None:
    s3_proxy.cut()
    with pytest.raises(StorageUnavailableError, match="unreachable") as err:
        put_bytes(cut_store, "k", b"x")
    assert isinstance(err.value, TransientError)
    assert err.value.status == 503
    with pytest.raises(StorageUnavailableError):
        cut_store.list()


def test_cut_in_the_middle_of_a_multipart_upload_keeps_the_old_object(
    cut_store: S3ObjectStore, s3_proxy: S3Proxy, s3_store: S3ObjectStore
) -> None:
    old = put_bytes(cut_store, "k.bin", b"old")
    data = os.urandom(2 * PART + 99)
    s3_proxy.cut_after(PART + MIB)  # inside the second part
    with pytest.raises(StorageUnavailableError):
        cut_store.put("k.bin", io.BytesIO(data))
    s3_proxy.restore()
    # Readers still see the whole old object; the failed upload left no visible key.
    assert get_bytes(cut_store, "k.bin") == b"old"
    assert cut_store.stat("k.bin") == old
    assert cut_store.list() == ["k.bin"]
    # The abort could not reach the server either: the parts it left belong to a
    # temporary key only, and the bucket's lifecycle rule removes them.
    uploads = s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket)
    assert [u["Key"].rsplit(".upload-", 1)[0] for u in uploads.get("Uploads", [])] == [
        "k.bin"
    ]
    # Retrying succeeds.
    info = cut_store.put("k.bin", io.BytesIO(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert get_bytes(cut_store, "k.bin") == data


def test_cut_while_reading_is_transient(
    cut_store: S3ObjectStore, s3_proxy: S3Proxy
) -> None:
    put_bytes(cut_store, "r.bin", os.urandom(3 * MIB))
    # Slow answers: most of the object is still on the server's side when the cut comes.
    s3_proxy.throttle(256 * 1024)
    stream = cut_store.open("r.bin")
    assert len(stream.read(1024)) == 1024
    s3_proxy.cut()
    with pytest.raises(StorageUnavailableError, match=r"r\.bin"):
        _read_all(stream)
    s3_proxy.restore()
    assert len(get_bytes(cut_store, "r.bin")) == 3 * MIB
