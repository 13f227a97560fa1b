"""Schemas shared by several domains of the api."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ballast_common.db import PageResult

T = TypeVar("T")

# Page numbers past this are refused (422): offsets must stay within a 64-bit integer
# on every backend, and nobody pages that far by hand.
MAX_PAGE = 1_000_000


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    size: int
    pages: int

    @classmethod
    def of(cls, result: PageResult[Any], convert: Callable[[Any], T]) -> Page[T]:
        """A response page from a repository page, converting each entity."""
        return cls(
            items=[convert(item) for item in result.items],
            total=result.total,
            page=result.page,
            size=result.size,
            pages=result.pages,
        )


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    code: str
    message: str
    details: dict[str, Any]
    trace_id: str | None
