"""Shapes every domain shares: one page of a list, and the one error body."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Paged(Protocol):
    """One page of entities as a repository returns it (`ballast_common.db.PageResult`)."""

    @property
    def items(self) -> Sequence[Any]: ...
    @property
    def total(self) -> int: ...
    @property
    def page(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def pages(self) -> int: ...


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    size: int
    pages: int

    @classmethod
    def of(cls, result: Paged, convert: Callable[[Any], T]) -> Page[T]:
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
