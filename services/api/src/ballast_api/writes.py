"""Idempotent writes in route handlers: one shape for every POST/PUT/PATCH."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from ballast_common.db import UnitOfWork

M = TypeVar("M", bound=BaseModel)


def idempotent_write(
    uow: UnitOfWork,
    write_id: str | None,
    operation: str,
    payload: Any,
    model: type[M],
    produce: Callable[[], tuple[int, BaseModel]],
) -> tuple[int, M]:
    """Run `produce` once per write id and return (status, response model).

    A replay returns the stored status and response, parsed back into `model`, so the
    first call and every replay answer the same.
    """

    def apply() -> tuple[int, dict[str, Any]]:
        status, result = produce()
        return status, result.model_dump(mode="json")

    replay = uow.idempotent(write_id, operation, payload, apply)
    return replay.status_code, model.model_validate(replay.response)
