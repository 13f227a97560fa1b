"""`Repository[T]`: CRUD over one model inside a unit of work, audited and versioned.

Every write flushes (never commits), bumps the row's version, and adds an audit row in
the same transaction. Updates take an optional expected version: a stale write is either
applied anyway (last-write-wins, the default; the result carries the conflict so a ui can
show it) or refused with `ConflictError` carrying both versions.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, func, inspect, or_, select
from sqlalchemy.orm import Mapper, Session

from ballast_common.db.serialize import jsonable
from ballast_common.errors import ConflictError, NotFoundError, ValidationError
from ballast_common.models.base import Model, utcnow


class Transaction(Protocol):
    """What a repository needs from its unit of work: the session to flush in and the
    audit trail to write to. `UnitOfWork` is one; the import points from uow to here."""

    session: Session

    def audit(
        self,
        action: str,
        resource_type: str,
        resource_id: str,
        *,
        old: Mapping[str, Any] | None = None,
        new: Mapping[str, Any] | None = None,
        write_id: str | None = None,
    ) -> object: ...


T = TypeVar("T", bound=Model)

OnConflict = Literal["overwrite", "reject"]
# Bookkeeping columns the caller may not set directly.
_PROTECTED = frozenset({"id", "version", "created_at", "updated_at", "deleted_at"})


@dataclass
class Conflict:
    """A write based on a stale version: what the writer saw vs what was there."""

    expected_version: int
    current_version: int
    current: dict[str, Any]


@dataclass
class UpdateResult(Generic[T]):
    entity: T
    changed: bool
    conflict: Conflict | None = None


@dataclass
class PageResult(Generic[T]):
    items: list[T]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size)) if self.size else 1


def row_dict(entity: Model) -> dict[str, Any]:
    """Column values of an entity (JSON-safe)."""
    mapper: Mapper[Any] = inspect(type(entity))
    return {
        attr.key: jsonable(getattr(entity, attr.key)) for attr in mapper.column_attrs
    }


class Repository(Generic[T]):
    """CRUD for one model. Build it with `uow.repo(Model)`.

    Args:
        model: the ORM class.
        uow: the unit of work whose session and write context are used.
        resource_type: name in audit rows (default: the table name).
    """

    def __init__(
        self, model: type[T], uow: Transaction, *, resource_type: str | None = None
    ):
        self.model = model
        self.uow = uow
        self.session = uow.session
        self.resource_type = resource_type or str(model.__tablename__)
        self._mapper: Mapper[Any] = inspect(model)
        self._columns = {attr.key for attr in self._mapper.column_attrs}
        self._soft = "deleted_at" in self._columns
        self._versioned = "version" in self._columns

    # -- reads -----------------------------------------------------------------------

    def _pk(self, entity_id: Any) -> Any:
        if isinstance(entity_id, str) and "id" in self._columns:
            column_type = self._mapper.columns["id"].type
            if getattr(column_type, "as_uuid", False):
                try:
                    return uuid.UUID(entity_id)
                except ValueError:
                    raise NotFoundError(
                        f"{self.resource_type} {entity_id!r} not found"
                    ) from None
        return entity_id

    def _live(self, stmt: Select[tuple[T]], include_deleted: bool) -> Select[tuple[T]]:
        if self._soft and not include_deleted:
            stmt = stmt.where(self.model.deleted_at.is_(None))  # type: ignore[attr-defined]
        return stmt

    def get_by_id(
        self, entity_id: Any, *, include_deleted: bool = False, for_update: bool = False
    ) -> T | None:
        """The entity, or None (soft-deleted rows count as absent unless asked for)."""
        pk = self._pk(entity_id)
        stmt = self._live(select(self.model), include_deleted).where(
            self._mapper.primary_key[0] == pk
        )
        if for_update:
            # Refresh a copy already in the session: the locked row may be newer than what
            # this transaction read before, and the version check must see the locked one.
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return self.session.execute(stmt).scalar_one_or_none()

    def get(self, entity_id: Any, **kwargs: Any) -> T:
        """Like `get_by_id` but raises `NotFoundError`."""
        entity = self.get_by_id(entity_id, **kwargs)
        if entity is None:
            raise NotFoundError(
                f"{self.resource_type} {entity_id} not found",
                details={"resource_type": self.resource_type, "id": str(entity_id)},
            )
        return entity

    def _criteria(self, criteria: Mapping[str, Any]) -> list[ColumnElement[bool]]:
        unknown = sorted(set(criteria) - self._columns)
        if unknown:
            raise ValidationError(
                f"unknown field(s) for {self.resource_type}: {', '.join(unknown)}",
                details={"fields": unknown},
            )
        clauses: list[ColumnElement[bool]] = []
        for key, value in criteria.items():
            column = getattr(self.model, key)
            if isinstance(value, (list, tuple, set, frozenset)):
                clauses.append(column.in_(list(value)))
            elif value is None:
                clauses.append(column.is_(None))
            else:
                clauses.append(column == value)
        return clauses

    def find_by(self, *, include_deleted: bool = False, **criteria: Any) -> list[T]:
        """Entities whose columns equal the criteria (a list/tuple value means IN)."""
        stmt = self._live(select(self.model), include_deleted).where(
            *self._criteria(criteria)
        )
        return list(self.session.execute(stmt).scalars())

    def paginate(
        self,
        page: int = 1,
        size: int = 25,
        *,
        order_by: str | None = None,
        search: str | None = None,
        search_fields: Sequence[str] = (),
        include_deleted: bool = False,
        where: Sequence[ColumnElement[bool]] = (),
        **filters: Any,
    ) -> PageResult[T]:
        """One page of entities matching `filters` (and `search` in `search_fields`).

        Args:
            page: 1-based page number.
            size: items per page (1..500).
            order_by: a column name, `-name` for descending (default: newest first when
                the model has created_at, else the primary key).
            where: further SQL conditions (e.g. what the caller may see), applied
                before counting and paging.
        """
        if page < 1 or not 1 <= size <= 500:
            raise ValidationError(
                "page must be >= 1 and size between 1 and 500",
                details={"fields": ["page", "size"]},
            )
        unknown = sorted(set(search_fields) - self._columns)
        if unknown:
            raise ValidationError(
                f"cannot search {self.resource_type} by {', '.join(unknown)}",
                details={"fields": unknown},
            )
        stmt = self._live(select(self.model), include_deleted).where(
            *self._criteria(filters), *where
        )
        if search:
            # The search text is literal: escape LIKE's wildcards and the escape character.
            escaped = (
                search.lower()
                .replace("\\", "\\\\")
                .replace("%", "\\%")
                .replace("_", "\\_")
            )
            pattern = f"%{escaped}%"
            conditions = [
                func.lower(getattr(self.model, f)).like(pattern, escape="\\")
                for f in search_fields
            ]
            if conditions:
                stmt = stmt.where(or_(*conditions))
        total = self.session.execute(
            select(func.count()).select_from(stmt.order_by(None).subquery())
        ).scalar_one()
        stmt = stmt.order_by(*self._ordering(order_by))
        items = list(
            self.session.execute(stmt.offset((page - 1) * size).limit(size)).scalars()
        )
        return PageResult(items=items, total=int(total), page=page, size=size)

    def _ordering(self, order_by: str | None) -> list[Any]:
        pk = self._mapper.primary_key[0]
        if not order_by:
            if "created_at" in self._columns:
                return [self.model.created_at.desc(), pk]  # type: ignore[attr-defined]
            return [pk]
        name = order_by.lstrip("-")
        if name not in self._columns:
            raise ValidationError(
                f"cannot order {self.resource_type} by {name!r}",
                details={"fields": ["order_by"]},
            )
        column = getattr(self.model, name)
        return [column.desc() if order_by.startswith("-") else column.asc(), pk]

    # -- writes ----------------------------------------------------------------------

    def _check_fields(self, values: Mapping[str, Any]) -> None:
        bad = sorted((set(values) - self._columns) | (set(values) & _PROTECTED))
        if bad:
            raise ValidationError(
                f"field(s) not writable on {self.resource_type}: {', '.join(bad)}",
                details={"fields": bad},
            )

    def create(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> T:
        """Insert one entity; audited as `create` with its full new values."""
        data = {**(values or {}), **kwargs}
        entity_id = data.pop("id", None)
        self._check_fields(data)
        entity = self.model(**data)
        if entity_id is not None:
            entity.id = entity_id  # type: ignore[attr-defined]
        self.session.add(entity)
        self.session.flush([entity])
        self.uow.audit(
            "create", self.resource_type, self._id_of(entity), new=row_dict(entity)
        )
        return entity

    def bulk_create(self, rows: Sequence[Mapping[str, Any]]) -> list[T]:
        """Insert many entities in one flush; one audit row each."""
        entities = []
        for data in rows:
            data = dict(data)
            entity_id = data.pop("id", None)
            self._check_fields(data)
            entity = self.model(**data)
            if entity_id is not None:
                entity.id = entity_id  # type: ignore[attr-defined]
            entities.append(entity)
        self.session.add_all(entities)
        self.session.flush(entities)
        for entity in entities:
            self.uow.audit(
                "create", self.resource_type, self._id_of(entity), new=row_dict(entity)
            )
        return entities

    def update(
        self,
        entity_id: Any,
        values: Mapping[str, Any] | None = None,
        /,
        *,
        expected_version: int | None = None,
        on_conflict: OnConflict = "overwrite",
        **kwargs: Any,
    ) -> UpdateResult[T]:
        """Change some fields of one entity.

        Only fields whose value really changes count; a write that changes nothing bumps
        no version and writes no audit row.

        Args:
            entity_id: primary key.
            values: field -> new value (merged with keyword arguments).
            expected_version: the version the writer based the change on.
            on_conflict: on a stale `expected_version`, "overwrite" (last-write-wins,
                conflict reported in the result) or "reject" (raise ConflictError).

        Raises:
            NotFoundError: no such live entity.
            ConflictError: stale version with on_conflict="reject"; details carry the
                current row and the attempted values.
        """
        data = {**(values or {}), **kwargs}
        self._check_fields(data)
        entity = self.get(entity_id, for_update=True)
        return self.update_entity(
            entity, data, expected_version=expected_version, on_conflict=on_conflict
        )

    def update_entity(
        self,
        entity: T,
        values: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        on_conflict: OnConflict = "overwrite",
    ) -> UpdateResult[T]:
        """`update` for an entity this transaction already loaded (and locked).

        Saves the second lookup on hot paths; the caller must have read the row with
        `get_by_id(..., for_update=True)` (or an equivalent `FOR UPDATE` query) in this
        transaction, or the version check can be stale.
        """
        self._check_fields(values)
        conflict = self._conflict(entity, expected_version, values, on_conflict)
        changed = self._apply(entity, values)
        return UpdateResult(entity=entity, changed=changed, conflict=conflict)

    def _conflict(
        self,
        entity: T,
        expected_version: int | None,
        data: Mapping[str, Any],
        on_conflict: OnConflict,
    ) -> Conflict | None:
        if expected_version is None or not self._versioned:
            return None
        current_version = int(entity.version)  # type: ignore[attr-defined]
        if current_version == expected_version:
            return None
        current = row_dict(entity)
        if on_conflict == "reject":
            raise ConflictError(
                f"{self.resource_type} {self._id_of(entity)} changed since version "
                f"{expected_version} (now {current_version})",
                current=current,
                attempted={**jsonable(dict(data)), "version": expected_version},
            )
        return Conflict(expected_version, current_version, current)

    def _apply(self, entity: T, data: Mapping[str, Any]) -> bool:
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        for key, value in data.items():
            before = getattr(entity, key)
            if jsonable(before) != jsonable(value):
                old[key], new[key] = before, value
                setattr(entity, key, value)
        if not new:
            return False
        self._bump(entity, old, new)
        self.session.flush([entity])
        # Audit the values as stored (after type coercion by the flush).
        new = {k: getattr(entity, k) for k in new}
        self.uow.audit(
            "update", self.resource_type, self._id_of(entity), old=old, new=new
        )
        return True

    def _bump(self, entity: T, old: dict[str, Any], new: dict[str, Any]) -> None:
        if self._versioned:
            old["version"] = entity.version  # type: ignore[attr-defined]
            new["version"] = entity.version + 1  # type: ignore[attr-defined]
            entity.version = new["version"]  # type: ignore[attr-defined]
        if "updated_at" in self._columns:
            old["updated_at"] = entity.updated_at  # type: ignore[attr-defined]
            new["updated_at"] = utcnow()
            entity.updated_at = new["updated_at"]  # type: ignore[attr-defined]

    def bulk_update(self, updates: Sequence[Mapping[str, Any]]) -> int:
        """Apply many `{"id": ..., field: value, ["version": expected]}` updates.

        Returns:
            How many entities really changed. Stale versions are refused (ConflictError)
            so a batch never silently overwrites.
        """
        changed = 0
        for item in updates:
            data = dict(item)
            if "id" not in data:
                raise ValidationError(
                    "each update needs an id", details={"fields": ["id"]}
                )
            entity_id = data.pop("id")
            expected = data.pop("version", None)
            result = self.update(
                entity_id, data, expected_version=expected, on_conflict="reject"
            )
            changed += int(result.changed)
        return changed

    def delete(
        self, entity_id: Any, *, soft: bool = True, expected_version: int | None = None
    ) -> bool:
        """Delete one entity (soft by default where the model supports it).

        Returns:
            False when there was no live entity (deleting twice is not an error).
        """
        entity = self.get_by_id(entity_id, for_update=True)
        if entity is None:
            return False
        self.delete_entity(entity, soft=soft, expected_version=expected_version)
        return True

    def delete_entity(
        self, entity: T, *, soft: bool = True, expected_version: int | None = None
    ) -> None:
        """`delete` for an entity this transaction already loaded (and locked)."""
        self._conflict(entity, expected_version, {"deleted": True}, "reject")
        old = row_dict(entity)
        if soft and self._soft:
            before = {"deleted_at": None}
            after: dict[str, Any] = {"deleted_at": utcnow()}
            entity.deleted_at = after["deleted_at"]  # type: ignore[attr-defined]
            self._bump(entity, before, after)
            self.session.flush([entity])
            self.uow.audit(
                "soft_delete",
                self.resource_type,
                self._id_of(entity),
                old=before,
                new=after,
            )
        else:
            self.session.delete(entity)
            self.session.flush([entity])
            self.uow.audit("delete", self.resource_type, self._id_of(entity), old=old)

    def _id_of(self, entity: T) -> str:
        identity = self._mapper.primary_key_from_instance(entity)
        return ":".join(str(part) for part in identity)
