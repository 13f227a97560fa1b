"""Object storage: one interface, two implementations.

- `LocalObjectStore`: a directory (the embedded default, under ``paths.data_dir``).
- `S3ObjectStore`: any S3-compatible server through boto3's managed transfers (parallel
  multipart for large objects, any size, each written once), the object's SHA-256 stored
  with it.

Both write atomically (a reader sees the whole object or none), record the object's
SHA-256 and size, and refuse keys that could escape their namespace.

`open_store(config)` picks one from the configuration (``s3.endpoint_url`` set: S3).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from ballast_common.config import AppConfig
from ballast_common.errors import AppError, NotFoundError, TransientError
from ballast_common.errors import ValidationError as AppValidationError
from ballast_common.outbound import CircuitOpen, Outbound, process_outbound

T = TypeVar("T")

CHUNK = 1024 * 1024
# S3 parts: 8 MiB (the minimum is 5 MiB for every part but the last).
PART_SIZE = 8 * 1024 * 1024
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,900}$")
# Earlier releases uploaded to `<key>.upload-<12 hex>` and copied into place; a leftover of
# such an upload never shows in `list`.
_S3_TMP = re.compile(r"\.upload-[0-9a-f]{12}$")
# Incomplete multipart uploads (the server was unreachable when one had to be aborted)
# are removed by a bucket lifecycle rule after this many days.
ABORT_INCOMPLETE_DAYS = 1
# The outbound target of the object store: its timeouts, attempts and breaker are
# `outbound.targets.s3` (BALLAST_OUTBOUND__TARGETS__S3__BREAKER_FAIL_MAX=...).
S3_TARGET = "s3"


class StorageError(AppError):
    """The object store refused or failed an operation."""

    default_code = "storage_error"


class StorageUnavailableError(StorageError, TransientError):
    """The object store could not be reached or failed temporarily (503); retrying may
    succeed. Both a `StorageError` and a `TransientError` (jobs retry it)."""

    default_code = "storage_unavailable"
    default_status = 503


class StorageCircuitOpenError(StorageUnavailableError, CircuitOpen):
    """The object store's circuit breaker is open: the call was not made, and a retry
    makes sense after `retry_after` seconds (503). Both a `StorageUnavailableError` and
    the outbound layer's `CircuitOpen`."""

    default_code = "storage_unavailable"


class TooLargeError(AppValidationError):
    """An upload is larger than allowed (413)."""

    default_code = "payload_too_large"
    default_status = 413


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str
    content_type: str = "application/octet-stream"


def check_key(key: str) -> str:
    """A safe object key: relative, no `..` segments, no empty segments."""
    if not _KEY.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise AppValidationError(
            f"invalid object key {key!r}", details={"fields": ["key"]}
        )
    return key


@runtime_checkable
class ObjectStore(Protocol):
    """What Ballast needs from an object store."""

    def put(
        self,
        key: str,
        data: IO[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> ObjectInfo:
        """Store the stream under `key` (replacing it atomically).

        Raises:
            TooLargeError: the stream is longer than `max_bytes` (nothing is stored).
        """
        ...

    def open(self, key: str) -> IO[bytes]:
        """A readable binary stream of the object (NotFoundError if absent)."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size, checksum and type (NotFoundError if absent)."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix`, sorted."""
        ...


def put_bytes(store: ObjectStore, key: str, data: bytes, **kwargs: Any) -> ObjectInfo:
    """Store a bytes value."""
    with tempfile.SpooledTemporaryFile(max_size=CHUNK) as buf:
        buf.write(data)
        buf.seek(0)
        return store.put(key, buf, **kwargs)


def get_bytes(store: ObjectStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def download(store: ObjectStore, key: str, target: Path) -> ObjectInfo:
    """Copy an object into a local file, verifying its SHA-256."""
    info = store.stat(key)
    digest = hashlib.sha256()
    with store.open(key) as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    if digest.hexdigest() != info.sha256:
        target.unlink(missing_ok=True)
        raise StorageError(
            f"object {key} is corrupt: checksum mismatch",
            details={"key": key, "expected": info.sha256},
        )
    return info


# --------------------------------------------------------------------------- local


class LocalObjectStore:
    """Objects as files under `root`; a sidecar `<file>.meta.json` holds size/sha256/type.

    Writes go to a temporary file in the same directory, are fsynced, then renamed over
    the target (atomic on POSIX), so readers never see half an object.
    """

    META = ".meta.json"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise AppValidationError(
                f"invalid object key {key!r}", details={"fields": ["key"]}
            )
        if path.name.endswith(self.META):
            raise AppValidationError(
                f"object keys may not end in {self.META}", details={"fields": ["key"]}
            )
        return path

    def put(
        self,
        key: str,
        data: IO[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := data.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLargeError(
                            f"upload is larger than {max_bytes} bytes",
                            details={"max_bytes": max_bytes},
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            info = ObjectInfo(key, size, digest.hexdigest(), content_type)
            meta = path.with_name(path.name + self.META)
            meta_tmp = tmp.with_name(tmp.name + self.META)
            meta_tmp.write_text(json.dumps(info.__dict__))
            # Concurrent writers of one key: the two renames happen under a lock, so
            # the metadata always describes the data file next to it.
            with self._locked(path):
                os.replace(tmp, path)
                os.replace(meta_tmp, meta)
        except BaseException:
            tmp.unlink(missing_ok=True)
            tmp.with_name(tmp.name + self.META).unlink(missing_ok=True)
            raise
        return info

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        lock = path.with_name(f".lock-{path.name}")
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFoundError(
                f"object {key} not found", details={"key": key}
            ) from None

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        meta = path.with_name(path.name + self.META)
        if not path.is_file():
            raise NotFoundError(f"object {key} not found", details={"key": key})
        try:
            data = json.loads(meta.read_text())
        except FileNotFoundError:
            raise NotFoundError(
                f"object {key} not found", details={"key": key}
            ) from None
        return ObjectInfo(**data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._locked(path):
            path.unlink(missing_ok=True)
            path.with_name(path.name + self.META).unlink(missing_ok=True)
        path.with_name(f".lock-{path.name}").unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Remove a whole "directory" of objects."""
        target = self._path(prefix.rstrip("/"))
        if target.is_dir():
            shutil.rmtree(target)

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not (
                path.name.endswith(self.META) or path.name.startswith(".")
            ):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


# --------------------------------------------------------------------------- S3


class S3ObjectStore:
    """An S3-compatible bucket through boto3's managed transfers.

    Objects up to `part_size` go up in one ``PutObject``; larger ones as a multipart
    upload of `part_size` parts (more when 10,000 would not do), several in parallel,
    straight to their key: an object is written once, whatever its size, and becomes
    visible whole when the upload completes. Every part carries a SHA-256 checksum
    (``x-amz-checksum-sha256``, verified by servers that implement the flexible
    checksums); the whole object's SHA-256 is stored as its ``sha256`` metadata (inputs
    that can be read twice) or ``sha256`` tag (streams), `stat` reports it and `download`
    verifies it. The stored size is checked against the bytes read. A failed upload is
    aborted; if the server is unreachable at that moment, the bucket's lifecycle rule
    (`ensure_bucket`) removes the parts later. Unreachable servers and 5xx errors raise
    `StorageUnavailableError` (a `TransientError`), refusals a `StorageError` naming the
    bucket, key and the server's error code.

    Every operation (`put`, `open`, `stat`, `exists`, `delete`, `list`, `ensure_bucket`)
    is one call of the outbound target `target` (``"s3"``; see `ballast_common.outbound`):
    timed and counted per target (``ballast_outbound_*``), and behind the target's circuit
    breaker. Only the store being unwell counts against the breaker (unreachable,
    timeouts, 5xx, throttling); a missing object, a refusal (403, no such bucket) or an
    invalid key or size is an answer, not a failure. While the breaker is open an
    operation fails at once with `StorageCircuitOpenError` (a `StorageUnavailableError`
    and a `CircuitOpen`) instead of waiting on a dead server. Reading an opened object's
    body is not a call of its own (a cut there raises `StorageUnavailableError`, as the
    caller asked for the bytes after the call succeeded).

    Retries are botocore's alone: each HTTP request (each part of a managed transfer
    included) is tried up to the target's ``attempts`` times by the client built in
    `from_config` (standard mode: exponential backoff with full jitter, capped at 20 s),
    and `Outbound` makes one attempt per operation. Retrying in both layers would
    multiply the attempts (3 x 3 requests against a dead server before one failure
    counts), and an outbound-level retry of an upload would send every part again
    where botocore resends only the part that failed. botocore's retries are still
    counted in ``ballast_outbound_retries_total{target="s3"}``.

    Args:
        client: A boto3 S3 client (its retry and timeout settings stand).
        bucket: The bucket.
        part_size: Bytes per part of a multipart upload (at least 5 MiB).
        max_concurrency: Parts uploaded in parallel.
        outbound: The process's outbound calls; None: a `Outbound.standalone()` of this
            store's own (default settings, breaker in memory), for stores built by hand.
        target: The outbound target (settings, breaker and metrics label).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        part_size: int = PART_SIZE,
        max_concurrency: int = 4,
        outbound: Outbound | None = None,
        target: str = S3_TARGET,
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.outbound = outbound if outbound is not None else Outbound.standalone()
        self.target = target
        # Every retry botocore makes of a request of this client, counted per target.
        # The unique id keeps one counter per client when several stores share it.
        client.meta.events.register(
            "request-created.s3",
            self._count_retry,
            unique_id=f"ballast-outbound-retries-{target}",
        )

    @classmethod
    def from_config(
        cls, config: AppConfig, *, outbound: Outbound | None = None
    ) -> S3ObjectStore:
        """The store of ``config.s3``, its client set up from the ``s3`` outbound target.

        Args:
            config: The application configuration.
            outbound: The process's outbound calls (a worker's, whose breakers share
                state through the database); None: `process_outbound(config)`.
        """
        s3 = config.s3
        outbound = outbound if outbound is not None else process_outbound(config)
        target = outbound.settings(S3_TARGET)
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            region_name=s3.region,
            # Neither given: boto3's default credential chain (the pod's identity).
            aws_access_key_id=s3.access_key_id or None,
            aws_secret_access_key=(
                s3.secret_access_key.get_secret_value()
                if s3.secret_access_key
                else None
            ),
            config=Config(
                # The only retries of S3 requests (see the class docstring): each
                # request, a transfer's parts included, at most `attempts` times.
                retries={"total_max_attempts": target.attempts, "mode": "standard"},
                connect_timeout=target.connect_timeout_s,
                read_timeout=target.timeout_s,
                # Path-style addressing works with every S3-compatible server.
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        return cls(client, s3.bucket, outbound=outbound)

    def _count_retry(self, request: Any = None, **_: Any) -> None:
        context = getattr(request, "context", None) or {}
        if int(context.get("retries", {}).get("attempt", 1)) > 1:
            self.outbound.count_retry(self.target)

    def call(self, key: str, fn: Callable[[], T]) -> T:
        """Run `fn` (requests of `client` about `key`) as one operation of the store's
        outbound target: breaker, timing and counts, botocore's errors mapped to ours on
        the way (so the breaker tells a missing object, an answer, from an unreachable
        server, a failure). For code that makes S3 requests the methods here do not
        (multipart uploads from browsers): exceptions `fn` raises itself pass as they
        are, and count against the breaker only if they are `TransientError`s.

        Raises:
            StorageCircuitOpenError: The breaker is open; `fn` was not called.
        """

        def mapped() -> T:
            with self._errors(key):
                return fn()

        try:
            # One attempt: botocore retries the requests (see the class docstring).
            return self.outbound.call(
                self.target, mapped, attempts=1, retry_on=_no_retry
            )
        except CircuitOpen as exc:
            raise StorageCircuitOpenError(
                f"object store unavailable for {self.bucket}/{key} (circuit open)",
                details={"bucket": self.bucket, "key": key, "circuit": self.target},
                retry_after=exc.retry_after,
            ) from None

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        where = f"{self.bucket}/{key}"
        details = {"bucket": self.bucket, "key": key}
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message", "") or "").strip()
            status = int(
                exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            )
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError(
                    f"object {key} not found", details=details
                ) from None
            reason = f"{code}: {message}" if message and message != code else code
            if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                raise StorageUnavailableError(
                    f"object store unavailable for {where} ({reason})",
                    details={**details, "code": code},
                ) from exc
            raise StorageError(
                f"object store refused {where}: {reason}",
                details={**details, "code": code},
            ) from exc
        except S3UploadFailedError as exc:
            raise StorageUnavailableError(
                f"object store upload failed for {where}: {exc}", details=details
            ) from exc
        except (BotoCoreError, Urllib3Error, OSError) as exc:
            raise StorageUnavailableError(
                f"object store unreachable for {where}: {exc}", details=details
            ) from exc

    def _transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.part_size,
            multipart_chunksize=self.part_size,
            max_concurrency=self.max_concurrency,
        )

    def put(
        self,
        key: str,
        data: IO[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> ObjectInfo:
        """Store `data` under `key` through boto3's managed transfer: one PutObject for a
        small object, a multipart upload straight to `key` for a large one (parts in
        parallel, any size S3 allows, the object written once: no temporary key and no
        server-side copy, which S3 limits to 5 GiB).

        A seekable input (a file, a spooled upload) is read twice: once for its SHA-256,
        which then goes into the object's metadata at creation, and once for the upload.
        A stream is read once; its SHA-256 is known only at the end and is recorded as
        the object's `sha256` tag (`stat` reads either).
        """
        check_key(key)
        seekable = bool(getattr(data, "seekable", lambda: False)())
        extra: dict[str, Any] = {
            "ContentType": content_type,
            "ChecksumAlgorithm": "SHA256",
        }
        if seekable:
            start = data.tell()
            sha, size = _hash_stream(data, max_bytes)
            data.seek(start)
            extra["Metadata"] = {"sha256": sha}
            source: io.RawIOBase = _Limited(data, size)
        else:
            source = hashing = _Hashing(data, max_bytes)

        def upload() -> tuple[str, int, int]:
            self.client.upload_fileobj(
                source,
                self.bucket,
                key,
                ExtraArgs=extra,
                Config=self._transfer_config(),
            )
            if seekable:
                done_sha, done_size = sha, size
            else:
                done_sha, done_size = hashing.sha256(), hashing.size
                self.client.put_object_tagging(
                    Bucket=self.bucket,
                    Key=key,
                    Tagging={"TagSet": [{"Key": "sha256", "Value": done_sha}]},
                )
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            return done_sha, done_size, int(head["ContentLength"])

        sha, size, stored = self.call(key, upload)
        if stored != size:
            with contextlib.suppress(Exception):
                self.call(
                    key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key)
                )
            raise StorageError(
                f"object store kept {stored} of {size} bytes of {self.bucket}/{key}",
                details={"bucket": self.bucket, "key": key},
            )
        return ObjectInfo(key, size, sha, content_type)

    def open(self, key: str) -> IO[bytes]:
        check_key(key)
        response = self.call(
            key, lambda: self.client.get_object(Bucket=self.bucket, Key=key)
        )
        return io.BufferedReader(
            _S3Body(self, key, response["Body"]), buffer_size=CHUNK
        )

    def stat(self, key: str) -> ObjectInfo:
        check_key(key)

        def head() -> tuple[dict[str, Any], str]:
            found = self.client.head_object(Bucket=self.bucket, Key=key)
            sha = str(found.get("Metadata", {}).get("sha256", ""))
            if not sha:  # a streamed upload: its checksum is a tag
                tags = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
                sha = next(
                    (t["Value"] for t in tags["TagSet"] if t["Key"] == "sha256"), ""
                )
            return found, sha

        found, sha = self.call(key, head)
        return ObjectInfo(
            key,
            int(found["ContentLength"]),
            sha,
            str(found.get("ContentType", "application/octet-stream")),
        )

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        check_key(key)
        self.call(key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def list(self, prefix: str = "") -> list[str]:
        def keys() -> list[str]:
            found: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(
                    item["Key"]
                    for item in page.get("Contents", [])
                    if not _S3_TMP.search(item["Key"])
                )
            return found

        return sorted(self.call(prefix, keys))

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist, and make it drop incomplete multipart
        uploads after `ABORT_INCOMPLETE_DAYS` (dev/test convenience; production buckets
        should carry the same lifecycle rule)."""
        try:
            self.call("", lambda: self.client.head_bucket(Bucket=self.bucket))
        except StorageUnavailableError:
            raise
        except (NotFoundError, StorageError):
            # Missing (404), or a head this identity may not make (403): create it.
            self.call("", lambda: self.client.create_bucket(Bucket=self.bucket))
        self.call(
            "",
            lambda: self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket,
                LifecycleConfiguration={
                    "Rules": [
                        {
                            "ID": "ballast-abort-incomplete-uploads",
                            "Status": "Enabled",
                            "Filter": {"Prefix": ""},
                            "AbortIncompleteMultipartUpload": {
                                "DaysAfterInitiation": ABORT_INCOMPLETE_DAYS
                            },
                        }
                    ]
                },
            ),
        )


def _no_retry(_exc: BaseException) -> bool:
    return False


def _too_large(max_bytes: int) -> TooLargeError:
    return TooLargeError(
        f"upload is larger than {max_bytes} bytes", details={"max_bytes": max_bytes}
    )


def _hash_stream(data: IO[bytes], max_bytes: int | None) -> tuple[str, int]:
    """SHA-256 (hex) and size of what is left of `data`, refusing more than `max_bytes`."""
    digest = hashlib.sha256()
    size = 0
    while chunk := data.read(CHUNK):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise _too_large(max_bytes)
        digest.update(chunk)
    return digest.hexdigest(), size


class _Hashing(io.RawIOBase):
    """A stream read once by the transfer: hashed on the way, cut at `max_bytes`."""

    def __init__(self, data: IO[bytes], max_bytes: int | None) -> None:
        self._data = data
        self._max = max_bytes
        self._digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._data.read(len(view))
        self.size += len(chunk)
        if self._max is not None and self.size > self._max:
            raise _too_large(self._max)
        self._digest.update(chunk)
        view[: len(chunk)] = chunk
        return len(chunk)

    def sha256(self) -> str:
        return self._digest.hexdigest()


class _Limited(io.RawIOBase):
    """The `size` bytes of `data` from where it stands, and no more: a file that grows
    while it is uploaded cannot put bytes under a checksum that does not cover them."""

    def __init__(self, data: IO[bytes], size: int) -> None:
        self._data = data
        self._start = data.tell()
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}
        self._pos = max(0, min(base[whence] + offset, self._size))
        self._data.seek(self._start + self._pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._data.read(min(len(view), self._size - self._pos))
        self._pos += len(chunk)
        view[: len(chunk)] = chunk
        return len(chunk)


class _S3Body(io.RawIOBase):
    """An S3 response body whose read errors become `StorageUnavailableError`."""

    def __init__(self, store: S3ObjectStore, key: str, body: Any) -> None:
        self._store = store
        self._key = key
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with self._store._errors(self._key):
            data: bytes = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


def open_store(config: AppConfig, *, outbound: Outbound | None = None) -> ObjectStore:
    """The configured store: S3 when ``s3.endpoint_url`` is set, else a local directory
    (``paths.data_dir/objects``).

    Args:
        config: The application configuration.
        outbound: The process's outbound calls for S3 (see `S3ObjectStore.from_config`).
    """
    if config.s3.endpoint_url:
        return S3ObjectStore.from_config(config, outbound=outbound)
    return LocalObjectStore(Path(config.paths.data_dir) / "objects")


__all__ = [
    "ABORT_INCOMPLETE_DAYS",
    "S3_TARGET",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "StorageCircuitOpenError",
    "StorageError",
    "StorageUnavailableError",
    "TooLargeError",
    "check_key",
    "download",
    "get_bytes",
    "open_store",
    "put_bytes",
]
