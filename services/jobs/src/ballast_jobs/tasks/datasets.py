"""``datasets.import``: the uploaded file -> a Parquet table in object storage.

Idempotent per dataset: the data object's key is derived from the dataset id (a rerun
overwrites it), and the dataset becomes READY in the same transaction as the job's
COMPLETED. A failed or cancelled import marks the dataset FAILED or CANCELLED in the
same transaction as the job's final status (`ballast_common.jobs` settles it, also when
the sweeper ends the job) and removes the data object.

Parsing runs chunk by chunk (`ballast_jobs.datasets.import_file`); between chunks the
run reports progress, which writes its heartbeat and stops it when the job was
cancelled or taken over by another run (a run that lost the job touches nothing).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from ballast_common.db import UnitOfWork, run_tx
from ballast_common.jobs import DatasetImportParams
from ballast_common.models import Dataset
from ballast_common.storage import open_store
from ballast_common.uploads import fetch
from ballast_jobs.datasets import import_file
from ballast_jobs.runtime import JobContext, JobFailure, JobLost, Outcome
from ballast_jobs.tasks import job_task


def data_key(dataset_id: uuid.UUID) -> str:
    return f"datasets/{dataset_id}/data.parquet"


def _update(ctx: JobContext, dataset_id: uuid.UUID, **values: Any) -> None:
    run_tx(lambda uow: uow.repo(Dataset).update(dataset_id, values), db=ctx.db)


def import_dataset(ctx: JobContext) -> Outcome:
    params = DatasetImportParams.model_validate(ctx.params)
    with ctx.db.session() as session:
        dataset = session.get(Dataset, params.dataset_id)
        if dataset is None or dataset.deleted_at is not None:
            raise JobFailure("the dataset was deleted", code="dataset_not_ready")
        source, fmt, recorded = dataset.source_key, dataset.format, dataset.sha256
    store = open_store(ctx.config)
    key = data_key(params.dataset_id)
    _update(
        ctx, params.dataset_id, status="IMPORTING", error_code=None, error_message=None
    )
    try:
        with tempfile.TemporaryDirectory(prefix="ballast-import-") as tmp:
            local = Path(tmp) / "source"
            # Verifies the upload's SHA-256; a browser's direct upload has none yet:
            # it is computed while reading and recorded on the dataset here.
            got = fetch(store, source, local)
            if got.sha256 != recorded:
                _update(ctx, params.dataset_id, sha256=got.sha256)
            ctx.progress(0.05, "parsing")
            out = Path(tmp) / "data.parquet"
            imported = import_file(
                local,
                fmt,
                ctx.config.datasets,
                out,
                lambda f: ctx.progress(0.05 + 0.85 * f, "parsing"),
            )
            ctx.progress(0.9, "storing")
            with out.open("rb") as fh:
                info = store.put(key, fh, content_type="application/vnd.apache.parquet")
            ctx.check()
    except JobLost:
        raise  # another run owns the job and its data object now
    except BaseException:
        store.delete(key)
        raise
    rows, columns, preview = imported.rows, imported.columns, imported.preview

    def ready(uow: UnitOfWork) -> None:
        uow.repo(Dataset).update(
            params.dataset_id,
            status="READY",
            data_key=key,
            row_count=rows,
            columns=columns,
            preview=preview,
            error_code=None,
            error_message=None,
        )

    return Outcome(
        data={
            "dataset_id": str(params.dataset_id),
            "rows": rows,
            "columns": columns,
            "data_sha256": info.sha256,
        },
        ref=f"dataset:{params.dataset_id}",
        apply=ready,
    )


import_task = job_task("datasets.import")(import_dataset)
