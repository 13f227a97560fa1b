from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from ballast_api.auth.service import revoke_all
from ballast_api.deps import CurrentPrincipal, DBDep, WriteCtxDep, WriteIdDep, require
from ballast_api.principal import Principal
from ballast_api.schemas import MAX_PAGE
from ballast_api.users import service
from ballast_api.writes import idempotent_write
from ballast_common.contracts import (
    Page,
    Preferences,
    UserAdminRead,
    UserCreate,
    UserUpdate,
)
from ballast_common.db import UnitOfWork, run_tx_async
from ballast_common.models import User
from ballast_common.security import Permission, ahash_password

router = APIRouter(prefix="/users", tags=["users"])
Reader = Annotated[Principal, Depends(require(Permission.USERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.USERS_WRITE))]


@router.get("/me/preferences", response_model=Preferences)
async def get_my_preferences(principal: CurrentPrincipal, db: DBDep) -> Preferences:
    """My theme, language and time zone."""
    return await run_tx_async(
        lambda uow: service.get_preferences(uow, principal.user_id), db=db
    )


@router.put("/me/preferences", response_model=Preferences)
async def put_my_preferences(
    body: Preferences, principal: CurrentPrincipal, db: DBDep, ctx: WriteCtxDep
) -> Preferences:
    """Save my theme, language and time zone."""
    return await run_tx_async(
        lambda uow: service.set_preferences(uow, principal.user_id, body),
        db=db,
        ctx=ctx,
    )


@router.get("", response_model=Page[UserAdminRead])
async def list_users(
    _principal: Reader,
    db: DBDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 50,
    q: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[UserAdminRead]:
    """Users with their roles (admin)."""

    return await run_tx_async(
        lambda uow: Page[UserAdminRead].of(
            service.page(uow, page, size, q), service.read
        ),
        db=db,
    )


@router.post("", response_model=UserAdminRead, status_code=201)
async def create_user(
    body: UserCreate,
    _principal: Writer,
    db: DBDep,
    ctx: WriteCtxDep,
    write_id: WriteIdDep,
) -> UserAdminRead:
    """Create a user with roles (admin); idempotent per Idempotency-Key."""
    password_hash = await ahash_password(body.password)

    def work(uow: UnitOfWork) -> tuple[int, UserAdminRead]:
        return idempotent_write(
            uow,
            write_id,
            "users.create",
            # The password is not part of the fingerprint: it is never stored in the clear.
            body.model_dump(mode="json", exclude={"password"}),
            UserAdminRead,
            lambda: (201, service.create(uow, body, password_hash)),
        )

    _, result = await run_tx_async(work, db=db, ctx=ctx)
    return result


@router.patch("/{user_id}", response_model=UserAdminRead)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, principal: Writer, db: DBDep, ctx: WriteCtxDep
) -> UserAdminRead:
    """Change a user's roles, status or profile (admin)."""
    return await run_tx_async(
        lambda uow: service.update(uow, principal.user_id, user_id, body),
        db=db,
        ctx=ctx,
    )


@router.delete("/{user_id}/sessions", status_code=204)
async def delete_user_sessions(
    user_id: uuid.UUID, _principal: Writer, db: DBDep, ctx: WriteCtxDep
) -> Response:
    """Sign a user out everywhere: end all of their sessions (admin)."""

    def work(uow: UnitOfWork) -> int:
        uow.repo(User).get(user_id)  # 404 for an unknown user
        return revoke_all(uow, user_id, by="admin")

    await run_tx_async(work, db=db, ctx=ctx)
    return Response(status_code=204)
