"""Celery tasks: thin wrappers that load a job by id and run its logic (runtime.run_job)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from ballast_jobs.celery_app import app
from ballast_jobs.runtime import Handler, run_job
from ballast_jobs.state import get_state


def job_task(name: str) -> Callable[[Handler], Any]:
    """Register `handler` as the Celery task `name` taking one job id."""

    def register(handler: Handler) -> Any:
        def task(self: Any, job_id: str) -> str:
            st = get_state()
            return run_job(
                handler,
                job_id,
                db=st.db,
                config=st.config,
                task_id=self.request.id,
                worker=self.request.hostname,
            )

        registered = app.task(name=name, bind=True)(task)
        cast(Any, registered).handler = handler  # read by the tests and the sweeper
        return registered

    return register
