"""``analysis.bootstrap``: confidence intervals for columns of a READY dataset."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import pandas as pd

from ballast_common.jobs import BootstrapParams
from ballast_common.models import Dataset
from ballast_common.storage import download, open_store
from ballast_jobs.analysis import bootstrap_ci, resamples_for
from ballast_jobs.runtime import JobContext, JobFailure, Outcome
from ballast_jobs.tasks import job_task


def bootstrap(ctx: JobContext) -> Outcome:
    params = BootstrapParams.model_validate(ctx.params)
    with ctx.db.session() as session:
        dataset = session.get(Dataset, params.dataset_id)
        if dataset is None or dataset.status != "READY" or not dataset.data_key:
            raise JobFailure(
                f"dataset {params.dataset_id} is not ready", code="dataset_not_ready"
            )
        key = dataset.data_key
    with tempfile.TemporaryDirectory(prefix="ballast-analysis-") as tmp:
        local = Path(tmp) / "data.parquet"
        download(open_store(ctx.config), key, local)
        frame = pd.read_parquet(local, columns=None)
    missing = [c for c in params.columns if c not in frame.columns]
    if missing:
        raise JobFailure(
            f"no such column(s): {', '.join(missing)}", code="invalid_params"
        )
    mode = params.mode or ctx.config.compute
    n_resamples = resamples_for(mode)
    results = {}
    for i, column in enumerate(params.columns):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() == 0:
            raise JobFailure(
                f"column {column!r} has no numeric values", code="invalid_params"
            )
        share = 1 / len(params.columns)
        ci = bootstrap_ci(
            values.to_numpy(dtype="float64", na_value=float("nan")),
            statistic=params.statistic,
            confidence=params.confidence,
            n_resamples=n_resamples,
            seed=params.seed if params.seed is not None else 0,
            progress=partial(_report, ctx, i, share, column),
        )
        results[column] = ci.as_dict()
    return Outcome(
        data={"dataset_id": str(params.dataset_id), "mode": mode, "columns": results},
    )


def _report(ctx: JobContext, index: int, share: float, column: str, f: float) -> None:
    ctx.progress((index + f) * share, f"resampling {column}")


bootstrap_task = job_task("analysis.bootstrap")(bootstrap)
