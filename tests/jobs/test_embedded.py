"""The embedded default: SQLite and kombu's filesystem transport, no servers at all —
the same worker and task code as production."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ballast_common.config import AppConfig
from ballast_common.db import DB, UnitOfWork, migrate, run_tx
from ballast_common.jobs import JobStatus, broker_settings, request_cancel
from ballast_common.models import Job
from tests.jobs.conftest import FAST, Stack

pytestmark = pytest.mark.serial  # a job runs within 5 s


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Stack]:
    url = f"sqlite:///{tmp_path}/ballast.db"
    db = DB(url)
    migrate(db=db)
    config = AppConfig(database={"url": url}, paths={"data_dir": tmp_path / "data"})
    env = {
        "BALLAST_DATABASE__URL": url,
        "BALLAST_PATHS__DATA_DIR": str(tmp_path / "data"),
        "BALLAST_LOG_LEVEL": "WARNING",
        **FAST,
    }
    stack = Stack(db, config, env, tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def cancel(uow: UnitOfWork, job_id: object) -> None:
    job = uow.session.get(Job, job_id, with_for_update=True)
    assert job is not None
    request_cancel(uow, job)


def test_filesystem_broker_runs_and_terminates_jobs(embedded: Stack) -> None:
    assert broker_settings(embedded.config)["broker_url"] == "filesystem://"
    embedded.start_worker()
    started = time.monotonic()
    job_id = embedded.enqueue(kwargs={"seconds": 0.2, "steps": 4})
    done = embedded.wait(job_id)
    assert done.status == JobStatus.COMPLETED, done.error_message
    assert time.monotonic() - started < 5
    # Forced termination uses the broadcast (revoke) channel: this transport has one.
    slow = embedded.enqueue(kwargs={"seconds": 30, "steps": 300, "cooperative": False})
    embedded.wait(slow, lambda j: j.progress > 0)
    run_tx(lambda uow: cancel(uow, slow), db=embedded.db)
    assert embedded.wait(slow, timeout=10).status == JobStatus.CANCELLED
    after = embedded.enqueue(kwargs={"seconds": 0, "steps": 1})
    assert embedded.wait(after).status == JobStatus.COMPLETED
