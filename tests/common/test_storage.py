"""Object storage: the local-directory implementation in full. The shared interface
tests and the S3 implementation against a real server are in test_storage_s3.py."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from ballast_common.config import AppConfig
from ballast_common.errors import NotFoundError, ValidationError
from ballast_common.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StorageError,
    TooLargeError,
    download,
    get_bytes,
    open_store,
    put_bytes,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def test_put_get_stat_list_delete(store: LocalObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    info = put_bytes(
        store, "datasets/a/source.csv", b"x,y\n1,2\n", content_type="text/csv"
    )
    assert info.size == 8
    assert info.sha256 == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert store.stat("datasets/a/source.csv") == info
    assert get_bytes(store, "datasets/a/source.csv") == b"x,y\n1,2\n"
    put_bytes(store, "datasets/b/source.csv", b"")
    assert store.list() == ["datasets/a/source.csv", "datasets/b/source.csv"]
    assert store.list("datasets/a") == ["datasets/a/source.csv"]
    assert store.exists("datasets/a/source.csv")
    store.delete("datasets/a/source.csv")
    store.delete("datasets/a/source.csv")  # twice is fine
    assert not store.exists("datasets/a/source.csv")
    with pytest.raises(NotFoundError):
        store.stat("datasets/a/source.csv")
    with pytest.raises(NotFoundError):
        store.open("datasets/a/source.csv")


def test_large_streams_are_hashed_while_written(store: LocalObjectStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    info = store.put("big.bin", io.BytesIO(data))
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_replacing_is_atomic_and_too_large_leaves_nothing(
    store: LocalObjectStore,
) -> None:
    put_bytes(store, "k.bin", b"old")
    with pytest.raises(TooLargeError) as err:
        store.put("k.bin", io.BytesIO(b"x" * 2_000_000), max_bytes=1_000_000)
    assert err.value.status == 413
    assert get_bytes(store, "k.bin") == b"old"
    with pytest.raises(TooLargeError):
        store.put("new.bin", io.BytesIO(b"x" * 10), max_bytes=5)
    assert not store.exists("new.bin")
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".upload-")] == []


def test_concurrent_writers_leave_one_whole_object(store: LocalObjectStore) -> None:
    payloads = [bytes([n]) * 500_000 for n in range(8)]
    threads = [
        threading.Thread(target=put_bytes, args=(store, "same.bin", p))
        for p in payloads
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = get_bytes(store, "same.bin")
    assert data in payloads
    assert store.stat("same.bin").sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "key", ["../escape", "/abs", "a//b", "a/./b", "a/../b", "", "x.meta.json", "a b"]
)
def test_unsafe_keys_are_refused(store: LocalObjectStore, key: str) -> None:
    with pytest.raises(ValidationError):
        put_bytes(store, key, b"x")


def test_download_verifies_the_checksum(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    put_bytes(store, "d/file.bin", b"payload")
    target = tmp_path / "out.bin"
    assert download(store, "d/file.bin", target).size == 7
    assert target.read_bytes() == b"payload"
    # Corrupt the stored bytes behind the store's back: the copy is refused.
    (store.root / "d" / "file.bin").write_bytes(b"tampered")
    with pytest.raises(StorageError, match="corrupt"):
        download(store, "d/file.bin", target)
    assert not target.exists()


def test_open_store_picks_the_implementation(tmp_path: Path) -> None:
    local = open_store(AppConfig(paths={"data_dir": tmp_path}))
    assert isinstance(local, LocalObjectStore)
    assert local.root == (tmp_path / "objects").resolve()
    s3 = open_store(
        AppConfig(
            s3={
                "endpoint_url": "http://127.0.0.1:9",
                "access_key_id": "k",
                "secret_access_key": "s" * 20,
            }
        )
    )
    assert isinstance(s3, S3ObjectStore)
    assert s3.bucket == "ballast"
    with pytest.raises(ValueError, match="5 MiB"):
        S3ObjectStore(s3.client, "b", part_size=1024)
