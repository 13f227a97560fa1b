from __future__ import annotations

import time
from typing import Any

from ballast_common.errors import TransientError
from ballast_common.jobs import SleepParams
from ballast_jobs.runtime import JobContext, JobFailure
from ballast_jobs.tasks import job_task


def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleep in steps with progress; optionally fail (transiently or for good)."""
    params = SleepParams.model_validate(ctx.params)
    if ctx.retry_count < params.fail_times:
        raise TransientError(f"demo transient failure {ctx.retry_count + 1}")
    if params.fail_message:
        raise JobFailure(params.fail_message, code="invalid_params")
    step = params.seconds / params.steps
    for i in range(params.steps):
        time.sleep(step)
        ctx.progress(
            (i + 1) / params.steps,
            f"step {i + 1}/{params.steps}",
            check=params.cooperative,
        )
    return {"slept_s": params.seconds, "steps": params.steps, "attempt": ctx.attempt}


sleep_task = job_task("demo.sleep")(sleep)
