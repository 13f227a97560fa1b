"""Direct uploads: a browser PUTs a file's parts straight to the object store (URLs
presigned here), then completes the upload into a dataset and its import job.

Only with S3 storage (the local directory store answers 409: upload through
``POST /v1/datasets``). Only the uploader (or an admin) sees an upload; anyone else
gets 404. The parts the store holds are the state of an upload (``GET`` lists them), so
a browser resumes after a refresh by asking for the missing ones again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ballast_api import policy
from ballast_api.datasets import service as datasets
from ballast_api.deps import DBDep, SettingsDep, WriteCtxDep, require
from ballast_api.jobs.dispatch import SenderDep
from ballast_api.policy import Access
from ballast_api.principal import Principal
from ballast_common import uploads
from ballast_common.config import AppConfig
from ballast_common.contracts import (
    DatasetImport,
    DatasetRead,
    JobView,
    UploadComplete,
    UploadCreate,
    UploadPart,
    UploadPartsRequest,
    UploadPartUrl,
    UploadPartUrls,
    UploadRead,
)
from ballast_common.db import DB, UnitOfWork, WriteContext, run_tx_async
from ballast_common.errors import AppError, NotFoundError, ValidationError
from ballast_common.models import Dataset, Job, Upload
from ballast_common.security import Permission
from ballast_common.storage import (
    ABORT_INCOMPLETE_DAYS,
    ObjectInfo,
    S3ObjectStore,
    TooLargeError,
    open_store,
)
from ballast_common.telemetry import get_logger

router = APIRouter(prefix="/uploads", tags=["uploads"])
log = get_logger(__name__)
# An upload still open after this long is abandoned (the bucket's lifecycle rule drops
# unfinished uploads after as long); its owner's next upload aborts a few at a time.
STALE = timedelta(days=ABORT_INCOMPLETE_DAYS)
MAX_SWEEP = 20
Writer = Annotated[Principal, Depends(require(Permission.DATASETS_WRITE))]

RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"description": "No such upload of mine (or it is gone from the store)"},
    409: {"description": "Direct uploads need S3, or the upload is not open"},
}


def _store(config: AppConfig) -> S3ObjectStore:
    return uploads.s3_store(open_store(config))


def _read(upload: Upload, parts: list[uploads.Part] | None = None) -> UploadRead:
    out = UploadRead.model_validate(
        {
            **{c: getattr(upload, c) for c in _COLUMNS},
            "part_count": -(-upload.size // upload.part_size),
        }
    )
    out.parts = [
        UploadPart(number=p.number, size=p.size, etag=p.etag) for p in parts or ()
    ]
    return out


_COLUMNS = (
    "id",
    "project_id",
    "dataset_id",
    "name",
    "filename",
    "format",
    "size",
    "part_size",
    "state",
    "created_at",
    "job_id",
)


def _mine(uow: UnitOfWork, principal: Principal, upload_id: uuid.UUID) -> Upload:
    """My upload (an admin: anyone's); 404 otherwise, as for one that does not exist."""
    upload = uow.session.get(Upload, upload_id)
    if upload is None or not (
        upload.user_id == principal.user_id or policy.is_admin(principal)
    ):
        raise NotFoundError(
            f"upload {upload_id} not found",
            details={"resource_type": "uploads", "id": str(upload_id)},
        )
    return upload


def _not_open(upload: Upload) -> AppError:
    return AppError(
        f"the upload is {upload.state.lower()}",
        code="upload_not_open",
        status=409,
        details={"state": upload.state},
    )


async def _sweep(
    principal: Principal, db: DB, ctx: WriteContext, store: S3ObjectStore
) -> None:
    """Abort my uploads left open longer than the bucket keeps unfinished ones (a few
    per call): the rows say ABORTED and the store drops their parts, even where the
    bucket has no lifecycle rule."""
    cutoff = datetime.now(UTC) - STALE

    def stale(uow: UnitOfWork) -> list[tuple[str, str]]:
        rows = uow.session.execute(
            select(Upload.id, Upload.key, Upload.s3_upload_id)
            .where(
                Upload.user_id == principal.user_id,
                Upload.state == "OPEN",
                Upload.created_at < cutoff,
            )
            .limit(MAX_SWEEP)
        ).all()
        for row in rows:
            uow.repo(Upload).update(row.id, state="ABORTED")
        return [(row.key, row.s3_upload_id) for row in rows]

    for key, s3_id in await run_tx_async(stale, db=db, ctx=ctx):
        try:
            await run_in_threadpool(uploads.abort, store, key, s3_id)
        except AppError as exc:  # the lifecycle rule removes the parts later
            log.warning("upload_abort_failed", key=key, error=str(exc))


@router.post(
    "",
    response_model=UploadRead,
    status_code=201,
    responses={
        **RESPONSES,
        403: {"description": "The named project may be read, not changed"},
        413: {"description": "The file is larger than datasets.max_direct_upload_mb"},
    },
)
async def create_upload(
    body: UploadCreate,
    principal: Writer,
    db: DBDep,
    config: SettingsDep,
    ctx: WriteCtxDep,
) -> UploadRead:
    """Begin a direct upload of a file into a dataset (of a project I may change): how
    to cut it into parts; then ask for their URLs."""
    store = _store(config)
    limit = int(config.datasets.max_direct_upload_mb * 1024 * 1024)
    if body.size > limit:
        raise TooLargeError(
            f"the file is larger than the limit of {limit / 1e6:g} MB",
            details={"max_bytes": limit},
        )
    fmt = datasets.infer_format(body.format, body.filename)
    plan = uploads.plan(body.size, config.datasets.upload_part_mb * uploads.MIB)
    if body.project_id is not None:
        project_id = body.project_id
        await run_tx_async(
            lambda uow: policy.check_project(uow, principal, project_id, Access.WRITE),
            db=db,
        )
    await _sweep(principal, db, ctx, store)
    dataset_id = uuid.uuid4()
    key = datasets.source_key(dataset_id, fmt)
    s3_id = await run_in_threadpool(uploads.start, store, key, body.content_type)
    name = body.name or PurePosixPath(body.filename).stem or body.filename

    def work(uow: UnitOfWork) -> UploadRead:
        if body.project_id is not None:
            policy.check_project(uow, principal, body.project_id, Access.WRITE)
        upload = uow.repo(Upload).create(
            user_id=principal.user_id,
            project_id=body.project_id,
            dataset_id=dataset_id,
            name=name[:200],
            filename=body.filename,
            format=fmt,
            content_type=body.content_type,
            key=key,
            s3_upload_id=s3_id,
            size=body.size,
            part_size=plan.part_size,
            state="OPEN",
        )
        uow.flush()
        return _read(upload)

    try:
        return await run_tx_async(work, db=db, ctx=ctx)
    except BaseException:
        await run_in_threadpool(uploads.abort, store, key, s3_id)
        raise


@router.get("/{upload_id}", response_model=UploadRead, responses=RESPONSES)
async def get_upload(
    upload_id: uuid.UUID, principal: Writer, db: DBDep, config: SettingsDep
) -> UploadRead:
    """One upload of mine with the parts the object store holds (to resume it)."""
    upload = await run_tx_async(lambda uow: _mine(uow, principal, upload_id), db=db)
    parts: list[uploads.Part] = []
    if upload.state == "OPEN":
        store = _store(config)
        try:
            parts = await run_in_threadpool(
                uploads.list_parts, store, upload.key, upload.s3_upload_id
            )
        except NotFoundError:
            parts = []  # completed or aborted meanwhile: the row says which soon
    return _read(upload, parts)


@router.post("/{upload_id}/parts", response_model=UploadPartUrls, responses=RESPONSES)
async def sign_parts(
    upload_id: uuid.UUID,
    body: UploadPartsRequest,
    principal: Writer,
    db: DBDep,
    config: SettingsDep,
) -> UploadPartUrls:
    """Presigned URLs to PUT some parts of an open upload of mine to (short-lived)."""
    upload = await run_tx_async(lambda uow: _mine(uow, principal, upload_id), db=db)
    if upload.state != "OPEN":
        raise _not_open(upload)
    count = -(-upload.size // upload.part_size)
    wrong = sorted({n for n in body.numbers if n > count})
    if wrong:
        raise ValidationError(
            f"the upload has parts 1 to {count}: no part {', '.join(map(str, wrong))}",
            details={"fields": ["numbers"], "part_count": count},
        )
    _store(config)
    signer = uploads.presigner(config)
    ttl = config.datasets.upload_url_ttl_s
    bucket = config.s3.bucket
    urls = []
    for n in dict.fromkeys(body.numbers):
        size = uploads.part_size_of(n, upload.size, upload.part_size)
        url = uploads.presign_part(
            signer, bucket, upload.key, upload.s3_upload_id, n, size, ttl
        )
        urls.append(UploadPartUrl(number=n, size=size, url=url))
    return UploadPartUrls(
        urls=urls, expires_at=datetime.now(UTC) + timedelta(seconds=ttl)
    )


def _check_parts(
    upload: Upload, sent: UploadComplete, held: list[uploads.Part]
) -> list[uploads.Part]:
    """The parts to join: every part once, in order, as the store holds them."""
    count = -(-upload.size // upload.part_size)
    numbers = [p.number for p in sent.parts]
    if numbers != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(numbers))
        raise ValidationError(
            f"name each of the upload's {count} parts once, in order"
            + (f" (missing: {', '.join(map(str, missing[:20]))})" if missing else ""),
            details={
                "fields": ["parts"],
                "part_count": count,
                "missing": missing[:100],
            },
        )
    by_number = {p.number: p for p in held}
    for part in sent.parts:
        stored = by_number.get(part.number)
        if stored is None:
            raise ValidationError(
                f"part {part.number} has not been uploaded",
                code="part_missing",
                details={"fields": ["parts"], "number": part.number},
            )
        if stored.etag != uploads.etag(part.etag):
            raise ValidationError(
                f"part {part.number}'s ETag does not match the part the store holds: "
                "upload it again",
                code="part_mismatch",
                details={"fields": ["parts"], "number": part.number},
            )
        expected = uploads.part_size_of(part.number, upload.size, upload.part_size)
        if stored.size != expected:
            raise ValidationError(
                f"part {part.number} has {stored.size} bytes, not {expected}: "
                "upload it again",
                code="part_mismatch",
                details={"fields": ["parts"], "number": part.number},
            )
    return [by_number[n] for n in numbers]


def _imported(uow: UnitOfWork, principal: Principal, upload: Upload) -> DatasetImport:
    dataset = uow.session.get(Dataset, upload.dataset_id)
    job = uow.session.get(Job, upload.job_id) if upload.job_id else None
    if dataset is None or job is None:
        raise NotFoundError(f"the dataset of upload {upload.id} is gone")
    read = DatasetRead.model_validate(dataset, from_attributes=True)
    read.can = policy.capabilities(
        principal, policy.access_to_dataset(uow, principal, dataset)
    )
    return DatasetImport(dataset=read, job=JobView.of(job))


@router.post(
    "/{upload_id}/complete",
    response_model=DatasetImport,
    status_code=202,
    responses={
        **RESPONSES,
        422: {"description": "A part is missing, or its ETag or size is wrong"},
    },
)
async def complete_upload(
    upload_id: uuid.UUID,
    body: UploadComplete,
    principal: Writer,
    db: DBDep,
    config: SettingsDep,
    ctx: WriteCtxDep,
    send: SenderDep,
) -> DatasetImport:
    """Join the uploaded parts into the file and import it as a dataset in a job (as
    ``POST /v1/datasets`` does); completing it again answers the same import."""
    upload = await run_tx_async(lambda uow: _mine(uow, principal, upload_id), db=db)
    if upload.state == "COMPLETED":
        return await run_tx_async(lambda uow: _imported(uow, principal, upload), db=db)
    if upload.state != "OPEN":
        raise _not_open(upload)
    if upload.project_id is not None:
        # Before the parts are joined: a refused import leaves no object behind.
        project_id = upload.project_id
        await run_tx_async(
            lambda uow: policy.check_project(uow, principal, project_id, Access.WRITE),
            db=db,
        )
    store = _store(config)
    try:
        held = await run_in_threadpool(
            uploads.list_parts, store, upload.key, upload.s3_upload_id
        )
    except NotFoundError:
        # Completed in the store by an earlier attempt whose answer was lost.
        held = None
    if held is not None:
        parts = _check_parts(upload, body, held)
        await run_in_threadpool(
            uploads.complete, store, upload.key, upload.s3_upload_id, parts
        )
    size = await run_in_threadpool(uploads.object_size, store, upload.key)
    if size != upload.size:
        raise ValidationError(
            f"the stored file has {size} bytes, not {upload.size}",
            code="size_mismatch",
            details={"fields": ["parts"]},
        )
    # The checksum is recorded by the import, which reads the object whole anyway.
    info = ObjectInfo(upload.key, size, "", upload.content_type)

    def work(uow: UnitOfWork) -> DatasetImport:
        row = uow.repo(Upload).get(upload_id, for_update=True)
        if row.state == "COMPLETED":  # a concurrent completion won
            return _imported(uow, principal, row)
        if row.state != "OPEN":
            raise _not_open(row)
        if row.project_id is not None:
            policy.check_project(uow, principal, row.project_id, Access.WRITE)
        dataset, job = datasets.create_with_import(
            uow,
            dataset_id=row.dataset_id,
            name=row.name,
            fmt=row.format,
            filename=row.filename,
            project_id=row.project_id,
            info=info,
            user_id=row.user_id,
            send=send,
            max_timeout=config.jobs.soft_time_limit,
        )
        uow.repo(Upload).update(row.id, state="COMPLETED", job_id=job.id)
        read = DatasetRead.model_validate(dataset, from_attributes=True)
        read.can = policy.capabilities(
            principal, policy.access_to_dataset(uow, principal, dataset)
        )
        return DatasetImport(dataset=read, job=JobView.of(job))

    result = await run_tx_async(work, db=db, ctx=ctx)
    await send.settle()
    return result


@router.delete(
    "/{upload_id}", status_code=204, response_class=Response, responses=RESPONSES
)
async def abort_upload(
    upload_id: uuid.UUID,
    principal: Writer,
    db: DBDep,
    config: SettingsDep,
    ctx: WriteCtxDep,
) -> Response:
    """Abort an open upload of mine (its parts are dropped); aborting again is a no-op."""
    upload = await run_tx_async(lambda uow: _mine(uow, principal, upload_id), db=db)
    if upload.state == "COMPLETED":
        raise _not_open(upload)
    if upload.state == "OPEN":
        await run_in_threadpool(
            uploads.abort, _store(config), upload.key, upload.s3_upload_id
        )

        def work(uow: UnitOfWork) -> None:
            row = uow.repo(Upload).get(upload_id, for_update=True)
            if row.state == "OPEN":
                uow.repo(Upload).update(row.id, state="ABORTED")

        await run_tx_async(work, db=db, ctx=ctx)
    return Response(status_code=204)
