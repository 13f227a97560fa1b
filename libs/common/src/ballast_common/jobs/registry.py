"""The tasks users may enqueue by name, their parameters, and what to do about a failure."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ballast_common.errors import ValidationError as AppValidationError


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SleepParams(_Params):
    """``demo.sleep``: sleeps in steps, reporting progress (demos, tests, benchmarks)."""

    seconds: float = Field(default=1.0, ge=0, le=3600)
    steps: int = Field(default=10, ge=1, le=10_000)
    # Raise a TransientError on the first N runs (to show retries).
    fail_times: int = Field(default=0, ge=0, le=100)
    # Fail permanently with this message.
    fail_message: str | None = Field(default=None, max_length=500)
    # False: ignore cancel requests (shows the forced termination after the grace).
    cooperative: bool = True


class DatasetImportParams(_Params):
    """``datasets.import``: parse an uploaded file into a dataset."""

    dataset_id: uuid.UUID


Statistic = Literal["mean", "median", "std"]
ComputeMode = Literal["fast", "accurate"]


class BootstrapParams(_Params):
    """``analysis.bootstrap``: bootstrap confidence intervals of columns of a dataset."""

    dataset_id: uuid.UUID
    columns: list[str] = Field(min_length=1, max_length=50)
    statistic: Statistic = "mean"
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    # None: the configured `compute` setting.
    mode: ComputeMode | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


@dataclass(frozen=True)
class TaskSpec:
    """A task users may enqueue by name."""

    name: str
    queue: str
    params: type[_Params]
    description: str
    # Soft time limit (in seconds) when the request names none.
    default_timeout: int = 1800


TASKS: Mapping[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("demo.sleep", "default", SleepParams, "Sleep with progress (demo)."),
        TaskSpec(
            "datasets.import",
            "imports",
            DatasetImportParams,
            "Parse an uploaded file into a dataset.",
        ),
        TaskSpec(
            "analysis.bootstrap",
            "analysis",
            BootstrapParams,
            "Bootstrap confidence intervals for columns of a dataset.",
        ),
    )
}

# What a user can do about a failure, by error code (shown next to the message).
SUGGESTED_ACTIONS: Mapping[str, str] = {
    "timeout": "The job ran past its time limit: use fast mode, a smaller dataset, or a longer timeout.",
    "worker_lost": "The worker running the job stopped repeatedly: retry later or contact an operator with the trace id.",
    "transient_exhausted": "A dependency stayed unavailable through every retry: retry the job later.",
    "dependency_failed": "A job this one depends on did not complete: retry that job, then this one.",
    "dataset_not_ready": "Import the dataset first (or wait for its import to finish), then retry.",
    "bad_file": "Fix the file (see the message) and upload it again.",
    "invalid_params": "Start the job again with corrected parameters.",
    "internal_error": "An unexpected error: retry; if it fails again, report the trace id.",
}


def suggested_action(code: str) -> str:
    return SUGGESTED_ACTIONS.get(code, SUGGESTED_ACTIONS["internal_error"])


def validate_params(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The task's parameters, validated (JSON-safe).

    Raises:
        ValidationError: unknown task name or invalid parameters (422).
    """
    spec = TASKS.get(name)
    if spec is None:
        raise AppValidationError(
            f"unknown job {name!r}; known: {', '.join(sorted(TASKS))}",
            details={"fields": ["name"], "known": sorted(TASKS)},
        )
    try:
        params = spec.params.model_validate(dict(kwargs))
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "kwargs",
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        raise AppValidationError(
            f"invalid parameters for {name}: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            details={"fields": ["kwargs"], "errors": errors},
        ) from None
    return params.model_dump(mode="json", exclude_unset=False)
