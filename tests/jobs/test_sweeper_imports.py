"""The sweeper and the runtime around imports, on SQLite in-process: a lost job is
re-sent once and first; a busy import keeps its heartbeat; an ended import job ends
its dataset; `BALLAST_REDIS_URL` selects the Redis broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, migrate, run_tx
from ballast_common.jobs import (
    MAX_PRIORITY,
    JobCreate,
    JobMessage,
    JobStatus,
    broker_settings,
    enqueue,
    request_cancel,
    retry,
)
from ballast_common.models import Dataset, Job, utcnow
from ballast_common.storage import LocalObjectStore, put_bytes
from ballast_jobs import runtime
from ballast_jobs.sweeper import sweep
from ballast_jobs.tasks.datasets import import_dataset


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    database = DB(f"sqlite:///{tmp_path}/ballast.db")
    migrate(db=database)
    try:
        yield database
    finally:
        database.dispose()


def config(tmp_path: Path, **jobs: Any) -> AppConfig:
    return AppConfig(
        database={"url": f"sqlite:///{tmp_path}/ballast.db"},
        paths={"data_dir": tmp_path / "data"},
        jobs=jobs,
    )


def add_job(
    db: DB, name: str = "demo.sleep", priority: int = 5, **kwargs: Any
) -> uuid.UUID:
    request = JobCreate(name=name, kwargs=kwargs, priority=priority)
    return run_tx(
        lambda uow: enqueue(uow, request, created_by=None, send=None).id, db=db
    )


def job(db: DB, job_id: uuid.UUID) -> Job:
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row


def dataset(db: DB, dataset_id: uuid.UUID) -> Dataset:
    with db.session() as session:
        row = session.get(Dataset, dataset_id)
        assert row is not None
        return row


def test_a_lost_job_is_resent_once_and_first(db: DB, tmp_path: Path) -> None:
    cfg = config(tmp_path, lease_s=10, redispatch_after_s=300)
    job_id = add_job(db, priority=2)
    claimed = runtime.claim(db, cfg, job_id, task_id="t", worker="w")
    assert claimed is not None
    sent: list[JobMessage] = []
    start = utcnow()

    def sweep_at(seconds: float) -> None:
        sweep(
            db, cfg, sent.append, lambda _: None, now=start + timedelta(seconds=seconds)
        )

    sweep_at(5)  # heartbeat still fresh
    assert sent == []
    sweep_at(11)  # lost: re-sent, at the highest priority
    assert [(m.job_id, m.priority) for m in sent] == [(str(job_id), MAX_PRIORITY)]
    for later in (12, 30, 60, 200):  # not on every pass, nor every lease
        sweep_at(later)
    assert len(sent) == 1
    sweep_at(320)  # that message too went unanswered: once more
    assert len(sent) == 2


def test_a_rerun_that_dies_too_is_resent_at_once(db: DB, tmp_path: Path) -> None:
    cfg = config(tmp_path, lease_s=10, redispatch_after_s=300)
    job_id = add_job(db)
    sent: list[JobMessage] = []
    for attempt in (1, 2, 3):
        claimed = runtime.claim(db, cfg, job_id, task_id="t", worker="w")
        assert claimed is not None
        assert claimed.attempt == attempt
        stale(db, job_id)
        sweep(db, cfg, sent.append, lambda _: None)
        sweep(db, cfg, sent.append, lambda _: None)
        assert len(sent) == attempt


def stale(db: DB, job_id: uuid.UUID) -> None:
    """The job's heartbeat stopped a minute ago (its worker died)."""

    def work(uow: UnitOfWork) -> None:
        row = uow.session.get(Job, job_id)
        assert row is not None
        row.heartbeat_at = utcnow() - timedelta(seconds=60)

    run_tx(work, db=db)


def test_a_busy_import_keeps_its_heartbeat(
    db: DB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat thread starved (as by C code holding the GIL): the import beats
    between chunks itself, so a sweeper running all along never takes it for lost."""
    cfg = config(
        tmp_path,
        lease_s=0.6,
        heartbeat_s=0.1,
        progress_interval_s=0.05,
        sweep_interval_s=0.05,
    )
    cfg.datasets.chunk_mb = 0.02
    store = LocalObjectStore(Path(cfg.paths.data_dir) / "objects")
    dataset_id = uuid.uuid4()
    body = "a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(60_000))
    info = put_bytes(store, f"datasets/{dataset_id}/source.csv", body.encode())
    run_tx(
        lambda uow: uow.repo(Dataset).create(
            id=dataset_id, name="t", format="csv", source_key=info.key
        ),
        db=db,
    )
    job_id = add_job(db, "datasets.import", dataset_id=str(dataset_id))
    monkeypatch.setattr(runtime._Heartbeat, "run", lambda self: None)
    progress = runtime.JobContext.progress

    def slow_progress(self: runtime.JobContext, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)  # a slow machine: each chunk takes a while
        progress(self, *args, **kwargs)

    monkeypatch.setattr(runtime.JobContext, "progress", slow_progress)
    resent: list[JobMessage] = []
    stop = threading.Event()

    def sweeper() -> None:
        while not stop.wait(0.05):
            sweep(db, cfg, resent.append, lambda _: None)

    thread = threading.Thread(target=sweeper)
    thread.start()
    started = time.monotonic()
    try:
        outcome = runtime.run_job(
            import_dataset, str(job_id), db=db, config=cfg, task_id="t", worker="w"
        )
    finally:
        stop.set()
        thread.join()
    took = time.monotonic() - started
    assert outcome == "completed"
    assert took > 3 * cfg.jobs.lease_s  # longer than the lost-job threshold
    assert resent == []
    done = job(db, job_id)
    assert (done.status, done.attempts, done.lost_runs) == (JobStatus.COMPLETED, 1, 0)
    assert dataset(db, dataset_id).row_count == 60_000


def import_job(db: DB) -> tuple[uuid.UUID, uuid.UUID]:
    dataset_id = uuid.uuid4()
    run_tx(
        lambda uow: uow.repo(Dataset).create(
            id=dataset_id, name="t", format="csv", source_key="k"
        ),
        db=db,
    )
    return dataset_id, add_job(db, "datasets.import", dataset_id=str(dataset_id))


def cancel(db: DB, job_id: uuid.UUID) -> None:
    def work(uow: UnitOfWork) -> None:
        row = uow.session.get(Job, job_id, with_for_update=True)
        assert row is not None
        request_cancel(uow, row)

    run_tx(work, db=db)


def test_cancelling_a_queued_import_cancels_the_dataset(db: DB) -> None:
    dataset_id, job_id = import_job(db)
    cancel(db, job_id)
    ds = dataset(db, dataset_id)
    assert (ds.status, ds.error_code) == ("CANCELLED", "job_cancelled")

    def again(uow: UnitOfWork) -> None:
        row = uow.session.get(Job, job_id, with_for_update=True)
        assert row is not None
        retry(uow, row, send=None)

    run_tx(again, db=db)
    ds = dataset(db, dataset_id)
    assert (ds.status, ds.error_code) == ("PENDING", None)


def test_a_forced_cancel_and_a_timeout_end_the_dataset(db: DB, tmp_path: Path) -> None:
    """A run that ignores the cancel (or dies) is ended by the sweeper: so is the import."""
    cfg = config(tmp_path, cancel_grace_s=1)
    dataset_id, job_id = import_job(db)
    assert runtime.claim(db, cfg, job_id, task_id="t", worker="w") is not None
    run_tx(
        lambda uow: uow.repo(Dataset).update(dataset_id, {"status": "IMPORTING"}),
        db=db,
    )
    cancel(db, job_id)
    stats = sweep(
        db, cfg, lambda _: None, lambda _: None, now=utcnow() + timedelta(seconds=5)
    )
    assert stats.terminated == 1
    assert dataset(db, dataset_id).status == "CANCELLED"

    dataset_id, job_id = import_job(db)
    assert runtime.claim(db, cfg, job_id, task_id="t", worker="w") is not None
    stats = sweep(
        db,
        cfg,
        lambda _: None,
        lambda _: None,
        now=utcnow() + timedelta(seconds=job(db, job_id).timeout + 100),
    )
    assert stats.timed_out == 1
    ds = dataset(db, dataset_id)
    assert (ds.status, ds.error_code) == ("FAILED", "timeout")


def test_redis_url_alone_selects_the_redis_broker(tmp_path: Path) -> None:
    cfg = AppConfig(redis_url="redis://cache:6379/0", paths={"data_dir": tmp_path})
    assert broker_settings(cfg)["broker_url"] == "redis://cache:6379/0"
    both = AppConfig(
        redis_url="redis://cache:6379/0",
        jobs={"broker_url": "redis://broker:6379/1"},
        paths={"data_dir": tmp_path},
    )
    assert broker_settings(both)["broker_url"] == "redis://broker:6379/1"
    assert (
        broker_settings(AppConfig(paths={"data_dir": tmp_path}))["broker_url"]
        == "filesystem://"
    )
