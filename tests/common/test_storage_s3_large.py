"""An object over S3's 5 GiB single-copy limit, through `S3ObjectStore.put` to the real
S3 test server: written once by a multipart upload, read back whole and verified, with
the uploading process's memory bounded by the transfer's parts, not the object.

The object is a 6 GiB sparse file (no disk). The test server keeps objects in RAM
(radosgw on a memstore OSD: the OSD's RSS peaked at 9.2 GB for it), so the test is
`serial` (phase 2 of scripts/test.sh, alone on the machine) and deletes the object at
the end (its memory is back within ~15 s: see the gc settings in ballast_testing/s3.py).
Measured on 2 cores / 24 GB: put 106 s, read back 24 s, this process's RSS +122 MiB
(put) and +23 MiB (read); 2.5 min with the server's start.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ballast_common.config import AppConfig
from ballast_common.storage import CHUNK, S3ObjectStore, open_store
from ballast_testing.s3 import S3Server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.serial,
    # About 2.5 min alone; room for a loaded machine before the 300 s default cuts it.
    pytest.mark.timeout(600),
]

GIB = 1024**3
MIB = 1024**2
SIZE = 6 * GIB
# Above the transfer's own buffers (parts of 8 MiB, a few in flight and queued) and the
# interpreter's noise, far below the object: the object never sits in memory.
RSS_GROWTH_LIMIT = 512 * MIB
# Random bytes at the start, across the 5 GiB mark and at the end, zeros (holes) in
# between: parts in the wrong place or order change the checksum.
MARKS = (0, 5 * GIB - 1234, SIZE - 4096)


def _rss() -> int:
    """This process's resident memory (in bytes)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _available() -> int:
    """The machine's available memory (in bytes)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def _peak_rss() -> Iterator[dict[str, int]]:
    """Samples this process's RSS while the block runs (``start``, ``peak``), and the
    machine's least available memory (``min_available``, reported only)."""
    seen = {"start": _rss(), "peak": _rss(), "min_available": _available()}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            seen["peak"] = max(seen["peak"], _rss())
            seen["min_available"] = min(seen["min_available"], _available())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()
        seen["peak"] = max(seen["peak"], _rss())


def _sparse_file(path: Path) -> dict[int, bytes]:
    """A SIZE-byte file, holes but for MARKS; returns the bytes written at each mark."""
    marks = {offset: os.urandom(4096) for offset in MARKS}
    with path.open("wb") as out:
        out.truncate(SIZE)
        for offset, blob in marks.items():
            out.seek(offset)
            out.write(blob)
    return marks


def _check_marks(marks: dict[int, bytes], offset: int, chunk: bytes) -> int:
    """Compare the part of `chunk` (at `offset` of the object) that overlaps a mark;
    returns how many bytes were compared."""
    compared = 0
    for start, blob in marks.items():
        lo, hi = max(offset, start), min(offset + len(chunk), start + len(blob))
        if lo < hi:
            assert chunk[lo - offset : hi - offset] == blob[lo - start : hi - start]
            compared += hi - lo
    return compared


def test_an_object_over_5_gib_is_written_once_and_reads_back_whole(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    config = AppConfig(
        s3={
            "endpoint_url": s3_server.endpoint_url,
            "bucket": s3_bucket,
            "region": s3_server.region,
            "access_key_id": s3_server.access_key,
            "secret_access_key": s3_server.secret_key,
        }
    )
    store = open_store(config)  # as the services build it (default part size)
    assert isinstance(store, S3ObjectStore)
    source = tmp_path / "big.bin"
    marks = _sparse_file(source)
    assert source.stat().st_blocks * 512 < 64 * MIB  # sparse: no disk for the holes
    requests: dict[str, int] = {}
    counting = threading.Lock()

    def count(event_name: str, **_: object) -> None:
        # The transfer's threads call this at once: an unlocked += lost two of 768.
        name = event_name.rsplit(".", 1)[-1]
        with counting:
            requests[name] = requests.get(name, 0) + 1

    store.client.meta.events.register("before-call.s3", count)
    try:
        started = time.monotonic()
        with _peak_rss() as upload_rss, source.open("rb") as data:
            info = store.put("big/six-gib.bin", data)
        uploaded = time.monotonic()
        assert info.size == SIZE
        # Written once: parts straight to the key, no temporary object and no
        # server-side copy (which S3 refuses over 5 GiB).
        assert requests["CreateMultipartUpload"] == 1
        assert requests["UploadPart"] == SIZE // store.part_size
        assert requests["CompleteMultipartUpload"] == 1
        assert "CopyObject" not in requests
        assert "UploadPartCopy" not in requests
        assert "DeleteObject" not in requests

        stat = store.stat("big/six-gib.bin")
        assert (stat.size, stat.sha256) == (SIZE, info.sha256)  # recorded at creation
        digest, size, compared = hashlib.sha256(), 0, 0
        with _peak_rss() as download_rss, store.open("big/six-gib.bin") as stream:
            while chunk := stream.read(8 * CHUNK):
                compared += _check_marks(marks, size, chunk)
                size += len(chunk)
                digest.update(chunk)
        downloaded = time.monotonic()
        # Every byte back (the checksum put computed from the file), the random
        # bytes where they were written.
        assert (size, digest.hexdigest()) == (SIZE, info.sha256)
        assert compared == 4096 * len(MARKS)
        for seen in (upload_rss, download_rss):
            assert seen["peak"] - seen["start"] < RSS_GROWTH_LIMIT, seen
        print(  # noqa: T201 - the measurement, shown with -s
            f"6 GiB: put {uploaded - started:.0f} s, read {downloaded - uploaded:.0f} s;"
            f" RSS growth {(upload_rss['peak'] - upload_rss['start']) // MIB} MiB"
            f" (put), {(download_rss['peak'] - download_rss['start']) // MIB} MiB (read);"
            f" least available memory {upload_rss['min_available'] // MIB} MiB (put),"
            f" {download_rss['min_available'] // MIB} MiB (read)"
        )
    finally:
        store.delete("big/six-gib.bin")
        source.unlink(missing_ok=True)
    assert store.list() == []
