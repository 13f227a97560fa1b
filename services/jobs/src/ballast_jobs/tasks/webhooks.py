"""``webhooks.deliver`` and ``webhooks.process``: one outbound attempt per run, and the
processing of an accepted inbound webhook (logic in `ballast_common.webhooks`).

A failed delivery attempt schedules the next run of the same job (a TransientError with
the jittered backoff as ``retry_after``); the job fails once the delivery is out of
attempts. A failed processing run leaves the receipt as a dead letter.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from ballast_common.errors import TransientError
from ballast_common.outbound import Outbound, full_jitter_delay
from ballast_common.webhooks import deliveries, inbound
from ballast_jobs.runtime import JobContext, JobFailure
from ballast_jobs.tasks import job_task

# Transient processing failures are retried this often before the dead letter.
PROCESS_RETRIES = 3

_outbound: tuple[int, Outbound] | None = None


def _outbound_for(ctx: JobContext) -> Outbound:
    """This process's outbound calls (rebuilt after a fork: no shared sockets)."""
    global _outbound
    if _outbound is None or _outbound[0] != os.getpid():
        _outbound = (os.getpid(), Outbound(ctx.config, engine=ctx.db.engine))
    return _outbound[1]


def deliver(ctx: JobContext) -> dict[str, Any]:
    delivery_id = uuid.UUID(str(ctx.params["delivery_id"]))
    done = deliveries.deliver(ctx.db, ctx.config, _outbound_for(ctx), delivery_id)
    if done.outcome == "retry":
        raise TransientError(
            f"webhook delivery failed: {done.error}", retry_after=done.retry_after
        )
    if done.outcome == "failed":
        raise JobFailure(
            f"webhook delivery failed: {done.error}", code="transient_exhausted"
        )
    return {
        "outcome": done.outcome,
        "status_code": done.status_code,
        "error": done.error,
    }


def process(ctx: JobContext) -> dict[str, Any]:
    receipt_id = uuid.UUID(str(ctx.params["receipt_id"]))
    try:
        outcome = inbound.process(ctx.db, receipt_id)
    except TransientError as exc:
        if ctx.retry_count < PROCESS_RETRIES:
            raise TransientError(
                exc.message,
                retry_after=full_jitter_delay(ctx.retry_count + 1, base=1.0, cap=60.0),
            ) from exc
        inbound.dead_letter(ctx.db, receipt_id, exc.message)
        raise JobFailure(f"webhook processing failed: {exc.message}") from exc
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        inbound.dead_letter(ctx.db, receipt_id, message)
        raise JobFailure(f"webhook processing failed: {message}"[:2000]) from exc
    return {"outcome": outcome}


deliver_task = job_task("webhooks.deliver")(deliver)
process_task = job_task("webhooks.process")(process)
