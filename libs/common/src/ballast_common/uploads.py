"""Direct uploads: a browser sends a file straight to the S3 bucket as a multipart
upload, each part PUT to a URL presigned here; the api never sees the bytes.

The server chooses the object's key and the part size (`plan`), starts the multipart
upload, presigns part URLs for the address browsers reach (``s3.public_url``), lists the
parts the store holds (a browser resumes from that list), and completes or aborts it.
The bucket needs a CORS rule that lets the ui's origins PUT and read the ``ETag``
header (`configure_cors`, from ``s3.cors_origins``).

The object arrives without the SHA-256 every other object carries (a browser cannot
hash a file of many gigabytes before sending it); the import reads the object once
anyway and records it then (`fetch`).

Everything here uses the bucket's boto3 client (`S3ObjectStore.client`); the local
directory store has no such thing (`s3_store` refuses it with 409).
Ref: https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ballast_common.config import AppConfig
from ballast_common.errors import AppError, NotFoundError, ValidationError
from ballast_common.storage import (
    CHUNK,
    ObjectInfo,
    ObjectStore,
    S3ObjectStore,
    StorageError,
    download,
)

T = TypeVar("T")
MIB = 1024 * 1024
# S3: parts are numbered 1..10,000; every part but the last is at least 5 MiB.
MAX_PARTS = 10_000
MIN_PART = 5 * MIB
MAX_PART = 5 * 1024 * MIB
MAX_OBJECT = 5 * 1024 * 1024 * MIB
# Answers a part's PUT may carry that the browser needs to read (CORS).
EXPOSED_HEADERS = ["ETag"]
CORS_RULE_ID = "ballast-direct-uploads"


class DirectUploadUnavailable(AppError):
    """The object store is the local directory: no direct uploads (409); upload through
    the api instead (``POST /v1/datasets``)."""

    default_code = "direct_upload_unavailable"
    default_status = 409


@dataclass(frozen=True)
class Plan:
    part_size: int
    part_count: int


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str


def plan(size: int, part_size: int) -> Plan:
    """How to cut `size` bytes: parts of `part_size` (larger when 10,000 of them would
    not hold the file, a whole number of MiB), the last part the rest.

    Raises:
        ValidationError: `size` is not positive or larger than S3 allows.
    """
    if size <= 0:
        raise ValidationError("the file is empty", details={"fields": ["size"]})
    part = max(part_size, MIN_PART, -(-size // MAX_PARTS))
    part = -(-part // MIB) * MIB
    if size > MAX_OBJECT or part > MAX_PART:
        raise ValidationError(
            "the file is larger than the object store allows",
            details={"fields": ["size"]},
        )
    return Plan(part, -(-size // part))


def part_size_of(number: int, size: int, part_size: int) -> int:
    """The size of part `number` (1-based) of a `size`-byte file."""
    return min(part_size, size - (number - 1) * part_size)


def s3_store(store: ObjectStore) -> S3ObjectStore:
    """`store` if it is an S3 bucket; else `DirectUploadUnavailable` (409)."""
    if not isinstance(store, S3ObjectStore):
        raise DirectUploadUnavailable(
            "direct uploads need S3 object storage: upload the file through the api",
            details={"fallback": "POST /v1/datasets"},
        )
    return store


def etag(value: str) -> str:
    """An ETag without its quotes (S3 answers ``"abc"``, browsers pass either form)."""
    return value.strip().strip('"')


def _s3(store: S3ObjectStore, key: str, fn: Callable[[], T]) -> T:
    """`fn`'s requests as one operation of the store's outbound target ``s3`` (breaker,
    timing and counts; other answers mapped as the store maps its own), the multipart
    answers mapped first: an upload gone from the store is a 404, parts it refuses a
    422 (answers, not failures of the store)."""

    def multipart() -> T:
        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            details = {"bucket": store.bucket, "key": key}
            if code == "NoSuchUpload":
                raise NotFoundError(
                    "the upload is no longer in the object store (completed, aborted "
                    "or expired)",
                    code="upload_gone",
                    details=details,
                ) from None
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise ValidationError(
                    f"the object store refused the parts ({code}): upload them again",
                    code="invalid_parts",
                    details={**details, "s3_code": code},
                ) from None
            raise

    return store.call(key, multipart)


def start(store: S3ObjectStore, key: str, content_type: str) -> str:
    """Begin a multipart upload to `key`; its id."""
    answer = _s3(
        store,
        key,
        lambda: store.client.create_multipart_upload(
            Bucket=store.bucket, Key=key, ContentType=content_type
        ),
    )
    return str(answer["UploadId"])


def list_parts(store: S3ObjectStore, key: str, upload_id: str) -> list[Part]:
    """The parts the store holds, by number (NotFoundError once it is gone)."""

    def pages() -> list[Part]:
        parts: list[Part] = []
        marker = 0
        while True:
            page = store.client.list_parts(
                Bucket=store.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=marker,
                MaxParts=1000,
            )
            parts.extend(
                Part(int(p["PartNumber"]), int(p["Size"]), etag(p["ETag"]))
                for p in page.get("Parts", [])
            )
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    return sorted(_s3(store, key, pages), key=lambda p: p.number)


def complete(
    store: S3ObjectStore, key: str, upload_id: str, parts: Sequence[Part]
) -> int:
    """Join the parts into the object; its size."""
    joined = {"Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in parts]}
    _s3(
        store,
        key,
        lambda: store.client.complete_multipart_upload(
            Bucket=store.bucket, Key=key, UploadId=upload_id, MultipartUpload=joined
        ),
    )
    return object_size(store, key)


def object_size(store: S3ObjectStore, key: str) -> int:
    """The stored object's size (NotFoundError if absent)."""
    head = _s3(
        store, key, lambda: store.client.head_object(Bucket=store.bucket, Key=key)
    )
    return int(head["ContentLength"])


def abort(store: S3ObjectStore, key: str, upload_id: str) -> None:
    """Abort the upload and drop its parts (one already gone is not an error)."""
    with contextlib.suppress(NotFoundError):
        _s3(
            store,
            key,
            lambda: store.client.abort_multipart_upload(
                Bucket=store.bucket, Key=key, UploadId=upload_id
            ),
        )


@functools.lru_cache(maxsize=4)
def _presigner(
    endpoint: str, region: str, key_id: str | None, secret: str | None
) -> Any:
    # Presigning is computed locally (no request): a client for the address browsers
    # reach, which may differ from the one the pods use (e.g. a cluster-internal name).
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def presigner(config: AppConfig) -> Any:
    """A boto3 client signing URLs for ``s3.public_url`` (default: the endpoint)."""
    s3 = config.s3
    endpoint = s3.public_url or s3.endpoint_url
    if not endpoint:
        raise DirectUploadUnavailable("direct uploads need S3 object storage")
    return _presigner(
        endpoint,
        s3.region,
        s3.access_key_id or None,
        s3.secret_access_key.get_secret_value() if s3.secret_access_key else None,
    )


def presign_part(
    client: Any,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    size: int,
    ttl_s: int,
) -> str:
    """A URL to PUT part `number` to, valid for `ttl_s` seconds. The part's size is
    signed too (``Content-Length`` is a signed header): the store refuses a body of
    another size, so nobody puts more into the bucket than the upload declared."""
    return str(
        client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": bucket,
                "Key": key,
                "UploadId": upload_id,
                "PartNumber": number,
                "ContentLength": size,
            },
            ExpiresIn=ttl_s,
            HttpMethod="PUT",
        )
    )


def configure_cors(store: S3ObjectStore, origins: Sequence[str]) -> None:
    """Let browsers of `origins` PUT parts to the bucket and read the ``ETag`` of the
    answer (kept with the bucket's other CORS rules, replacing an earlier one of ours).
    """
    if not origins:
        return

    def put_rule() -> None:
        rules: list[dict[str, Any]] = []
        try:
            current = store.client.get_bucket_cors(Bucket=store.bucket)
            rules = [
                r for r in current.get("CORSRules", []) if r.get("ID") != CORS_RULE_ID
            ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchCORSConfiguration":
                raise
        rules.append(
            {
                "ID": CORS_RULE_ID,
                "AllowedOrigins": list(origins),
                "AllowedMethods": ["PUT"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": EXPOSED_HEADERS,
                "MaxAgeSeconds": 3600,
            }
        )
        store.client.put_bucket_cors(
            Bucket=store.bucket, CORSConfiguration={"CORSRules": rules}
        )

    _s3(store, "", put_rule)


def fetch(store: ObjectStore, key: str, target: Path) -> ObjectInfo:
    """Copy an object into `target` like `storage.download` (which verifies its
    SHA-256); an object uploaded straight from a browser has none yet: it is hashed
    while it is read, and the checksum is recorded as the object's ``sha256`` tag (what
    `S3ObjectStore.stat` reads), so later reads verify it."""
    info = store.stat(key)
    if info.sha256 or not isinstance(store, S3ObjectStore):
        return download(store, key, target)
    digest = hashlib.sha256()
    size = 0
    with store.open(key) as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    if size != info.size:
        target.unlink(missing_ok=True)
        raise StorageError(
            f"object {key} changed while it was read",
            details={"key": key, "expected": info.size, "read": size},
        )
    sha = digest.hexdigest()
    _s3(
        store,
        key,
        lambda: store.client.put_object_tagging(
            Bucket=store.bucket,
            Key=key,
            Tagging={"TagSet": [{"Key": "sha256", "Value": sha}]},
        ),
    )
    return ObjectInfo(key, size, sha, info.content_type)


__all__ = [
    "MAX_PARTS",
    "MIN_PART",
    "DirectUploadUnavailable",
    "Part",
    "Plan",
    "abort",
    "complete",
    "configure_cors",
    "etag",
    "fetch",
    "list_parts",
    "object_size",
    "part_size_of",
    "plan",
    "presign_part",
    "presigner",
    "s3_store",
    "start",
]
