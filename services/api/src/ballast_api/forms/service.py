"""save_form / load_form: versioned shared form data."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from ballast_api.drafts import service as drafts
from ballast_common.contracts import FormConflict, FormRead, FormSave
from ballast_common.db import UnitOfWork
from ballast_common.errors import ConflictError, NotFoundError
from ballast_common.models import Form


def _read(form: Form, overwrote: FormConflict | None = None) -> FormRead:
    return FormRead(
        form_id=form.form_id,
        data=dict(form.data),
        version=form.version,
        updated_at=form.updated_at,
        updated_by=form.updated_by,
        overwrote=overwrote,
    )


def save_form(
    uow: UnitOfWork, user_id: uuid.UUID, form_id: str, body: FormSave
) -> tuple[int, FormRead]:
    """Create or update a form. Returns (status code, form)."""
    form = uow.session.execute(
        select(Form).where(Form.form_id == form_id).with_for_update()
    ).scalar_one_or_none()
    repo = uow.repo(Form)
    if body.clear_drafts:
        drafts.discard(uow, user_id, form_id)
    if form is None:
        if body.expected_version not in (None, 0) and not body.force:
            raise ConflictError(
                f"form {form_id} does not exist (expected version {body.expected_version})",
                current={"version": 0, "data": {}},
                attempted={"version": body.expected_version, "data": body.data},
            )
        form = repo.create(form_id=form_id, data=body.data, updated_by=user_id)
        return 201, _read(form)
    result = repo.update_entity(
        form,
        {"data": body.data, "updated_by": user_id},
        expected_version=body.expected_version,
        on_conflict="overwrite" if body.force else "reject",
    )
    overwrote = None
    if result.conflict is not None:
        overwrote = FormConflict(
            expected_version=result.conflict.expected_version,
            current_version=result.conflict.current_version,
            current=result.conflict.current,
        )
    return 200, _read(result.entity, overwrote)


def load_form(uow: UnitOfWork, form_id: str) -> FormRead:
    form = uow.session.execute(
        select(Form).where(Form.form_id == form_id)
    ).scalar_one_or_none()
    if form is None:
        raise NotFoundError(f"form {form_id} not found", details={"form_id": form_id})
    return _read(form)
