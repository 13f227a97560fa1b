"""Import a file and analyse it, on a real worker: READY with a preview, or FAILED with
a clear error and no data object; then bootstrap intervals with progress."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ballast_common import uploads
from ballast_common.config import AppConfig
from ballast_common.db import run_tx
from ballast_common.jobs import JobStatus
from ballast_common.models import Dataset
from ballast_common.storage import (
    LocalObjectStore,
    S3ObjectStore,
    open_store,
    put_bytes,
)
from ballast_testing.s3 import S3Server
from tests.jobs.conftest import Stack
from tests.jobs.test_import_bounds import bomb_xlsx, rss_mb

pytestmark = pytest.mark.integration


def store(stack: Stack) -> LocalObjectStore:
    return LocalObjectStore(Path(stack.config.paths.data_dir) / "objects")


def import_file(
    stack: Stack, data: bytes, fmt: str = "csv"
) -> tuple[uuid.UUID, uuid.UUID]:
    dataset_id = uuid.uuid4()
    info = put_bytes(store(stack), f"datasets/{dataset_id}/source.{fmt}", data)
    run_tx(
        lambda uow: uow.repo(Dataset).create(
            id=dataset_id,
            name="test",
            format=fmt,
            source_key=info.key,
            size_bytes=info.size,
            sha256=info.sha256,
        ),
        db=stack.db,
    )
    job_id = stack.enqueue("datasets.import", kwargs={"dataset_id": str(dataset_id)})
    return dataset_id, job_id


def dataset(stack: Stack, dataset_id: uuid.UUID) -> Dataset:
    with stack.db.session() as session:
        row = session.get(Dataset, dataset_id)
        assert row is not None
        return row


def test_import_then_bootstrap(shared: Stack) -> None:
    rows = "".join(f"{i},{(i * 37) % 101}\n" for i in range(5000))
    dataset_id, job_id = import_file(shared, ("x,y\n" + rows).encode())
    job = shared.wait(job_id)
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.result_ref == f"dataset:{dataset_id}"
    ds = dataset(shared, dataset_id)
    assert ds.status == "READY"
    assert ds.row_count == 5000
    assert [c["name"] for c in ds.columns] == ["x", "y"]
    assert ds.preview[0] == {"x": 0, "y": 0}
    assert store(shared).exists(f"datasets/{dataset_id}/data.parquet")

    analysis = shared.enqueue(
        "analysis.bootstrap",
        kwargs={"dataset_id": str(dataset_id), "columns": ["y"], "mode": "accurate"},
    )
    seen = shared.wait(
        analysis,
        lambda j: 0 < j.progress < 1 or (j.status != "PENDING" and j.progress == 1),
    )
    assert seen.status in (JobStatus.RUNNING, JobStatus.COMPLETED)
    done = shared.wait(analysis, timeout=60)
    assert done.status == JobStatus.COMPLETED, done.error_message
    [result] = shared.results(analysis)
    ci = result["columns"]["y"]
    assert result["mode"] == "accurate"
    assert ci["n_resamples"] == 10_000
    assert ci["low"] < ci["estimate"] < ci["high"]
    assert sum(ci["hist_counts"]) == 10_000


def test_broken_file_fails_cleanly(shared: Stack) -> None:
    dataset_id, job_id = import_file(shared, "a;b\n1;\xe9\n".encode("latin-1"))
    job = shared.wait(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == "bad_file"
    assert "not UTF-8" in (job.error_message or "")
    assert job.error_action == "Fix the file (see the message) and upload it again."
    assert job.retry_count == 0
    ds = dataset(shared, dataset_id)
    assert (ds.status, ds.error_code, ds.data_key, ds.row_count) == (
        "FAILED",
        "bad_file",
        None,
        None,
    )
    assert not store(shared).exists(f"datasets/{dataset_id}/data.parquet")


def test_analysis_of_a_dataset_that_is_not_ready(shared: Stack) -> None:
    job_id = shared.enqueue(
        "analysis.bootstrap", kwargs={"dataset_id": str(uuid.uuid4()), "columns": ["x"]}
    )
    job = shared.wait(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == "dataset_not_ready"
    assert job.error_action
    assert "Import the dataset first" in job.error_action


def test_import_through_s3(
    make_stack: Callable[..., Stack], s3_server: S3Server
) -> None:
    """Production flavour: the upload and the parsed table live in a real S3 bucket."""
    bucket = s3_server.create_bucket()
    s3 = {
        "endpoint_url": s3_server.endpoint_url,
        "bucket": bucket,
        "region": s3_server.region,
        "access_key_id": s3_server.access_key,
        "secret_access_key": s3_server.secret_key,
    }
    stack = make_stack(**{f"BALLAST_S3__{k.upper()}": v for k, v in s3.items()})
    stack.start_worker(concurrency=1)
    bucket_store = open_store(AppConfig(s3=s3))
    assert isinstance(bucket_store, S3ObjectStore)

    def upload(data: bytes) -> tuple[uuid.UUID, uuid.UUID]:
        dataset_id = uuid.uuid4()
        info = put_bytes(bucket_store, f"datasets/{dataset_id}/source.csv", data)
        run_tx(
            lambda uow: uow.repo(Dataset).create(
                id=dataset_id,
                name="s3",
                format="csv",
                source_key=info.key,
                size_bytes=info.size,
                sha256=info.sha256,
            ),
            db=stack.db,
        )
        return dataset_id, stack.enqueue(
            "datasets.import", kwargs={"dataset_id": str(dataset_id)}
        )

    good, good_job = upload(
        b"x,y\n" + b"".join(b"%d,%d\n" % (i, i % 7) for i in range(300))
    )
    bad, bad_job = upload(b"")
    # A browser's direct upload: a multipart upload with no checksum; the import
    # computes it while reading and records it on the dataset and the object.
    direct = uuid.uuid4()
    data = b"x,y\n" + b"".join(b"%d,%d\n" % (i, i % 5) for i in range(1000))
    key = f"datasets/{direct}/source.csv"
    mpu = uploads.start(bucket_store, key, "text/csv")
    part = bucket_store.client.upload_part(
        Bucket=bucket, Key=key, UploadId=mpu, PartNumber=1, Body=data
    )
    uploads.complete(
        bucket_store, key, mpu, [uploads.Part(1, len(data), uploads.etag(part["ETag"]))]
    )
    run_tx(
        lambda uow: uow.repo(Dataset).create(
            id=direct, name="direct", format="csv", source_key=key, size_bytes=len(data)
        ),
        db=stack.db,
    )
    direct_job = stack.enqueue("datasets.import", kwargs={"dataset_id": str(direct)})
    assert stack.wait(good_job).status == JobStatus.COMPLETED
    assert dataset(stack, good).row_count == 300
    assert stack.wait(direct_job).status == JobStatus.COMPLETED
    sha = hashlib.sha256(data).hexdigest()
    assert (dataset(stack, direct).sha256, dataset(stack, direct).row_count) == (
        sha,
        1000,
    )
    assert bucket_store.stat(key).sha256 == sha
    assert bucket_store.exists(f"datasets/{good}/data.parquet")
    failed = stack.wait(bad_job)
    assert failed.status == JobStatus.FAILED
    assert dataset(stack, bad).status == "FAILED"
    assert bucket_store.list(f"datasets/{bad}/") == [f"datasets/{bad}/source.csv"]


def test_cancel_ends_a_running_import(make_stack: Callable[..., Stack]) -> None:
    """Cancelled mid-parse: the run stops between chunks, the job and the dataset are
    CANCELLED together, and no data object is left."""
    stack = make_stack(BALLAST_DATASETS__CHUNK_MB="0.05")
    stack.start_worker(concurrency=1)
    rows = "".join(f"{i},{i % 13},label {i % 101}\n" for i in range(600_000))
    dataset_id, job_id = import_file(stack, ("x,y,z\n" + rows).encode())
    stack.wait(job_id, lambda j: j.status == JobStatus.RUNNING and j.progress > 0.3)
    assert dataset(stack, dataset_id).status == "IMPORTING"
    stack.cancel(job_id)
    job = stack.wait(job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.progress < 0.9
    assert job.progress_message != "terminated after the cancel grace period"
    ds = dataset(stack, dataset_id)
    assert (ds.status, ds.data_key) == ("CANCELLED", None)
    assert not store(stack).exists(f"datasets/{dataset_id}/data.parquet")


def test_zip_bomb_fails_cleanly_in_little_worker_memory(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack()
    stack.start_worker(concurrency=1)
    bomb = tmp_path / "bomb.xlsx"
    bomb_xlsx(bomb)
    dataset_id, job_id = import_file(stack, bomb.read_bytes(), fmt="excel")
    job = stack.wait(job_id, timeout=60)
    assert job.status == JobStatus.FAILED
    assert job.error_code == "bad_file"
    assert "zip bomb" in (job.error_message or "")
    assert job.worker_pid is not None
    peak = rss_mb(job.worker_pid)  # the pool process that ran it, still alive
    assert 0 < peak < 300, f"worker peak RSS {peak:.0f} MB"
    ds = dataset(stack, dataset_id)
    assert (ds.status, ds.error_code) == ("FAILED", "bad_file")
