"""Incremental backups: the audited changes since the parent, as row images.

Every write goes through the audited unit of work, so the audit rows after the parent's
last audit id name every row that changed. An incremental reads those audit rows and,
in the same snapshot, the current image of every row they name (or notes that it is
gone). Replaying the images of a chain in order gives the state at capture time, even
where an audit row records only the changed fields (updates) or a named transition
(job_started, login, role changes).

Tables by how they are captured:

- audited tables (``resource_type`` = table name, ``resource_id`` = primary key):
  users, roles, permissions, projects, datasets, forms, drafts, jobs, sessions;
- child tables, replaced as a set whenever their parent row is audited:
  user_roles and role_permissions (role changes are audited on the user / role),
  project_members (audited on the project), job_results (written with the job's COMPLETED transition);
- append-only tables, by id range: audit_log itself and events (with the ids that were
  still missing at capture time looked for again later, so a transaction that commits
  late is not skipped);
- write_ids (idempotency records), by creation time with an overlap window.

Columns written without an audit row (job heartbeats and progress, a session's
last-seen time, a draft's client sequence when the value did not change) are captured
whenever the row is, but left out of the comparison (`VOLATILE`). Any other unaudited
write shows up as a checksum difference: that incremental is marked bad.

An incremental refuses to run when the schema revision or the source database differ
from its parent's: after a migration or a switch, take a full backup.

Row images on PostgreSQL are the server's own text form of every column (``col::text``)
and are replayed with ``CAST(text AS column type)``, so every value PostgreSQL can hold
comes back exactly: ±infinity and year-1 or BC dates and timestamps, NaN and numerics
of any size, bytea, floats to the last bit, JSON null apart from SQL NULL. Such records
say ``"enc": "pg-text"``; records without it (SQLite, and change sets written before)
hold JSON-safe Python values.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Column,
    Connection,
    Select,
    Table,
    Text,
    TypeDecorator,
    and_,
    bindparam,
    cast,
    delete,
    func,
    null,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

import ballast_common.models  # noqa: F401 - registers every table on Model.metadata
from ballast_common.db.serialize import jsonable
from ballast_common.models import Model

BATCH = 1000
# How far back (in ids) a full backup looks for ids still missing at capture time.
GAP_WINDOW = 10_000
VOLATILE: dict[str, list[str]] = {
    "jobs": ["progress", "progress_message", "heartbeat_at", "dispatched_at"],
    "sessions": ["last_seen_at"],
    "drafts": ["client_seq"],
}
# child table -> (parent table, {child column: parent column}).
CHILDREN: dict[str, tuple[str, dict[str, str]]] = {
    "user_roles": ("users", {"user_id": "id"}),
    "role_permissions": ("roles", {"role_id": "id"}),
    "job_results": ("jobs", {"job_id": "id"}),
    # Member changes are audited on the project (projects:<id>).
    "project_members": ("projects", {"project_id": "id"}),
}
APPEND_BY_ID: dict[str, str] = {"audit_log": "id", "events": "id"}
APPEND_BY_TIME: dict[str, str] = {"write_ids": "created_at"}
# Tables larger than this (estimated rows) are compared by an incremental's
# verification on the rows it carries, not scanned whole: capture time grows with
# the changes, not with the database. Full backups always compare everything.
FULL_COMPARE_ROWS = 100_000
# write_ids rows are looked for this far before the parent's capture time.
TIME_OVERLAP = timedelta(minutes=10)


def tables() -> dict[str, Table]:
    return dict(Model.metadata.tables)


def audited_tables() -> list[str]:
    special = set(CHILDREN) | set(APPEND_BY_ID) | set(APPEND_BY_TIME)
    return sorted(t for t in tables() if t not in special)


def compared_columns() -> dict[str, list[str] | None]:
    """Per table, the columns an incremental's verification compares."""
    out: dict[str, list[str] | None] = {}
    for name, table in tables().items():
        skip = set(VOLATILE.get(name, []))
        out[name] = [c.name for c in table.columns if c.name not in skip]
    return out


# --------------------------------------------------------------------------- values


def _python_type(column: Column[Any]) -> type | None:
    kind: Any = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    try:
        found: type = kind.python_type
    except NotImplementedError:
        return None
    return found


def decode(column: Column[Any], value: Any) -> Any:
    """A JSON value from a row image back into the column's Python type."""
    if value is None:
        return None
    kind = _python_type(column)
    if kind is datetime:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if kind is date:
        return date.fromisoformat(value)
    if kind is uuid.UUID:
        return uuid.UUID(str(value))
    if kind is int and isinstance(value, str):
        return int(value)
    if kind is Decimal:
        return Decimal(str(value))
    return value


# A row image lists its JSON columns holding SQL NULL (as opposed to JSON null, which
# the models write for None) under this key, so replay restores the same one.
SQL_NULL = "__sql_null__"
_NULL_FLAG = "__isnull__"
# Row images as PostgreSQL's text form of each column (see the module docstring).
PG_TEXT = "pg-text"
# The primary key, selected natively beside the text image (to match audit ids).
_PK = "__pk__"


def encoding(conn: Connection) -> str | None:
    """How row images read through `conn` are encoded (None: JSON-safe values)."""
    return PG_TEXT if conn.dialect.name == "postgresql" else None


def pg_settings(conn: Connection) -> None:
    """Session settings that make PostgreSQL's text output exact and unambiguous
    (inside a transaction: they end with it)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "SET LOCAL TIME ZONE 'UTC'; SET LOCAL extra_float_digits = 3; "
            "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; "
            "SET LOCAL bytea_output = 'hex'"
        )


def _json_columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if _python_type(c) in (dict, list)]


def select_images(table: Table, conn: Connection) -> Select[Any]:
    """SELECT every column as an image: on PostgreSQL the text form of each column
    plus the native primary key; elsewhere the values plus an IS NULL flag per JSON
    column."""
    if encoding(conn) == PG_TEXT:
        return select(
            *[cast(c, Text).label(c.name) for c in table.columns],
            *[c.label(_PK + c.name) for c in _pk_columns(table)],
        )
    flags = [c.is_(None).label(_NULL_FLAG + c.name) for c in _json_columns(table)]
    return select(table, *flags)


def image(table: Table, row: Mapping[Any, Any]) -> dict[str, Any]:
    out = {c.name: row[c.name] for c in table.columns}
    if _PK + _pk_columns(table)[0].name in row:
        return out  # text images keep SQL NULL and JSON null apart by themselves
    nulls = [c.name for c in _json_columns(table) if row[_NULL_FLAG + c.name]]
    if nulls:
        out[SQL_NULL] = nulls
    return out


def native_key(table: Table, row: Mapping[Any, Any]) -> tuple[Any, ...]:
    """The primary key of a row (or a row image) as Python values."""
    pk = _pk_columns(table)
    if _PK + pk[0].name in row:
        return tuple(row[_PK + c.name] for c in pk)
    return tuple(decode(c, row[c.name]) for c in pk)


def encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in row.items()}


def decode_row(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    values = {
        name: decode(table.columns[name], value)
        for name, value in row.items()
        if name in table.columns
    }
    for name in row.get(SQL_NULL, ()):
        values[name] = null()
    return values


def _pk_columns(table: Table) -> list[Column[Any]]:
    return list(table.primary_key.columns)


def _key_from_resource_id(table: Table, resource_id: str) -> tuple[Any, ...] | None:
    pk = _pk_columns(table)
    parts = resource_id.split(":") if len(pk) > 1 else [resource_id]
    if len(parts) != len(pk):
        return None
    try:
        values = []
        for column, part in zip(pk, parts, strict=True):
            kind = _python_type(column)
            values.append(kind(part) if kind in (int, uuid.UUID) else part)
    except (TypeError, ValueError):
        return None
    return tuple(values)


def _fetch_by_keys(
    conn: Connection, table: Table, keys: Iterable[tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    pk = _pk_columns(table)
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    key_list = list(keys)
    for start in range(0, len(key_list), BATCH):
        batch = key_list[start : start + BATCH]
        if len(pk) == 1:
            cond = pk[0].in_([k[0] for k in batch])
        else:
            cond = tuple_(*pk).in_(batch)
        for row in conn.execute(select_images(table, conn).where(cond)).mappings():
            found[native_key(table, row)] = image(table, row)
    return found


# --------------------------------------------------------------------------- ranges


def id_range_state(
    conn: Connection, table: Table, column: str, *, window: int = GAP_WINDOW
) -> dict[str, Any]:
    """For a full backup: the last id and the ids missing in the last `window` ids."""
    col = table.columns[column]
    last = int(conn.execute(select(func.coalesce(func.max(col), 0))).scalar_one())
    first = max(0, last - window)
    present = {
        int(r[0]) for r in conn.execute(select(col).where(col > first, col <= last))
    }
    now = datetime.now(UTC).isoformat()
    gaps = {str(i): now for i in range(first + 1, last + 1) if i not in present}
    return {"last": last, "gaps": gaps}


def change_log_for_full(conn: Connection) -> dict[str, Any]:
    all_tables = tables()
    state: dict[str, Any] = {"captured_at": datetime.now(UTC).isoformat()}
    for name, column in APPEND_BY_ID.items():
        state[name] = id_range_state(conn, all_tables[name], column)
    return state


def _live_gaps(gaps: Mapping[str, str], horizon_s: int, now: datetime) -> list[int]:
    keep = []
    for key, first_seen in gaps.items():
        if now - datetime.fromisoformat(first_seen) <= timedelta(seconds=horizon_s):
            keep.append(int(key))
    return keep


# --------------------------------------------------------------------------- capture


def row_hash(row: Mapping[str, Any], columns: Iterable[str]) -> int:
    """60 bits of the sha256 of a row image (JSON-safe values) over `columns`."""
    blob = json.dumps([row.get(c) for c in columns], separators=(",", ":"))
    return int(hashlib.sha256(blob.encode()).hexdigest()[:15], 16)


def estimated_rows(conn: Connection, table: str) -> int:
    if conn.dialect.name == "postgresql":
        value = conn.execute(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:t)"),
            {"t": table},
        ).scalar()
        if value is not None and int(value) >= 0:
            return int(value)
    return int(
        conn.execute(select(func.count()).select_from(tables()[table])).scalar_one()
    )


class ChangeWriter:
    """Writes records (gzip JSON lines) in the order they are applied, and keeps a
    checksum of the rows it carries per table (for `FULL_COMPARE_ROWS`)."""

    def __init__(self, stream: IO[bytes], enc: str | None = None) -> None:
        self._gz = gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=3)
        self.enc = enc
        self.records = 0
        self.rows = 0
        self.carried: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def write(self, record: dict[str, Any]) -> None:
        if self.enc is not None:
            record = {**record, "enc": self.enc}
        self._gz.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self.records += 1
        self.rows += len(record.get("rows", ())) + len(record.get("keys", ()))
        columns = compared_columns().get(str(record["t"])) or []
        acc = self.carried[str(record["t"])]
        for row in record.get("rows", ()):
            acc[0] += 1
            acc[1] += row_hash(row, columns)

    def carried_stats(self, table: str) -> dict[str, Any]:
        count, total = self.carried.get(table, [0, 0])
        return {"rows": count, "checksum": str(total), "scope": "carried"}

    def close(self) -> None:
        self._gz.close()


def _sorted_names() -> list[str]:
    return [t.name for t in Model.metadata.sorted_tables]


def capture(
    conn: Connection,
    parent_log: Mapping[str, Any],
    out: ChangeWriter,
    *,
    horizon_s: int = 3600,
) -> dict[str, Any]:
    """Write the changes since `parent_log` to `out`; returns this backup's change log.

    Runs inside the caller's (snapshot) transaction, so the images and the audit rows
    agree with the table checksums taken in the same transaction.
    """
    now = datetime.now(UTC)
    pg_settings(conn)
    all_tables = tables()
    log: dict[str, Any] = {"captured_at": now.isoformat()}
    appended: dict[str, list[dict[str, Any]]] = {}
    for name, column in APPEND_BY_ID.items():
        table = all_tables[name]
        col = table.columns[column]
        parent = parent_log.get(name, {"last": 0, "gaps": {}})
        first = int(parent.get("last", 0))
        old_gaps = dict(parent.get("gaps", {}))
        wanted_gaps = _live_gaps(old_gaps, horizon_s, now)
        last = int(conn.execute(select(func.coalesce(func.max(col), 0))).scalar_one())
        last = max(last, first)
        cond = and_(col > first, col <= last)
        if wanted_gaps:
            cond = or_(cond, col.in_(wanted_gaps))
        rows = [
            image(table, r)
            for r in conn.execute(
                select_images(table, conn).where(cond).order_by(col)
            ).mappings()
        ]
        present = {int(r[column]) for r in rows}
        gaps = {str(i): old_gaps[str(i)] for i in wanted_gaps if i not in present}
        stamp = now.isoformat()
        for i in range(first + 1, last + 1):
            if i not in present:
                gaps[str(i)] = stamp
        log[name] = {"first": first, "last": last, "gaps": gaps, "count": len(rows)}
        appended[name] = rows

    # Rows named by the new audit rows, grouped per table.
    touched: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    audited = set(audited_tables())
    for row in appended["audit_log"]:
        table_name = str(row["resource_type"])
        if table_name not in audited:
            continue
        key = _key_from_resource_id(all_tables[table_name], str(row["resource_id"]))
        if key is not None:
            touched[table_name].add(key)

    images: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for name, keys in touched.items():
        images[name] = _fetch_by_keys(conn, all_tables[name], keys)

    order = _sorted_names()
    # 1. deletions, children first.
    for name in reversed(order):
        if name not in touched:
            continue
        gone = [k for k in touched[name] if k not in images[name]]
        pk = [c.name for c in _pk_columns(all_tables[name])]
        for start in range(0, len(gone), BATCH):
            dead = [dict(zip(pk, k, strict=True)) for k in gone[start : start + BATCH]]
            out.write(
                {"t": name, "op": "delete", "keys": [encode_row(k) for k in dead]}
            )
    # 2. upserts, parents first; child sets replaced after their parents.
    for name in order:
        if name in touched and images[name]:
            _write_upserts(out, name, list(images[name].values()))
        if name in CHILDREN:
            parent, mapping = CHILDREN[name]
            _capture_children(conn, all_tables[name], parent, mapping, touched, out)
        if name in APPEND_BY_ID and appended[name]:
            _write_upserts(out, name, appended[name])
        if name in APPEND_BY_TIME:
            time_col = all_tables[name].columns[APPEND_BY_TIME[name]]
            since_raw = parent_log.get("captured_at")
            since = (
                datetime.fromisoformat(since_raw) - TIME_OVERLAP
                if since_raw
                else datetime.min.replace(tzinfo=UTC)
            )
            recent = [
                image(all_tables[name], r)
                for r in conn.execute(
                    select_images(all_tables[name], conn).where(time_col >= since)
                ).mappings()
            ]
            _write_upserts(out, name, recent)
    log["touched"] = {k: len(v) for k, v in sorted(touched.items())}
    return log


def _write_upserts(out: ChangeWriter, name: str, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        out.write(
            {
                "t": name,
                "op": "upsert",
                "rows": [encode_row(r) for r in rows[start : start + BATCH]],
            }
        )


def _capture_children(
    conn: Connection,
    table: Table,
    parent: str,
    mapping: Mapping[str, str],
    touched: Mapping[str, set[tuple[Any, ...]]],
    out: ChangeWriter,
) -> None:
    parent_keys = touched.get(parent)
    if not parent_keys:
        return
    # Parents have a single-column primary key here.
    (child_col,) = mapping
    keys = sorted(k[0] for k in parent_keys)
    col = table.columns[child_col]
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        rows = [
            encode_row(image(table, r))
            for r in conn.execute(
                select_images(table, conn).where(col.in_(batch))
            ).mappings()
        ]
        out.write(
            {
                "t": table.name,
                "op": "replace",
                "column": child_col,
                "parents": [jsonable(k) for k in batch],
                "rows": rows,
            }
        )


# --------------------------------------------------------------------------- replay


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rb") as stream:
        for line in stream:
            if line.strip():
                yield json.loads(line)


def _insert(conn: Connection, table: Table, enc: str | None = None) -> Any:
    factory = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = factory(table)
    if enc == PG_TEXT:
        stmt = stmt.values(
            {
                c.name: cast(bindparam("v_" + c.name, type_=Text), c.type)
                for c in table.columns
            }
        )
    pk = [c.name for c in _pk_columns(table)]
    others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in pk}
    if not others:
        return stmt.on_conflict_do_nothing(index_elements=pk)
    return stmt.on_conflict_do_update(index_elements=pk, set_=others)


def _rows_for_insert(
    table: Table, rows: Iterable[Mapping[str, Any]], enc: str | None
) -> list[dict[str, Any]]:
    if enc == PG_TEXT:
        return [{"v_" + c.name: r.get(c.name) for c in table.columns} for r in rows]
    if enc is not None:
        raise ValueError(f"unknown row encoding {enc!r} in the change set")
    return [decode_row(table, r) for r in rows]


def apply(
    conn: Connection,
    records: Iterable[Mapping[str, Any]],
    *,
    tables: Mapping[str, Table] | None = None,
) -> int:
    """Apply one incremental's records inside the caller's transaction; returns rows.

    Args:
        tables: name -> table (default: the ORM models' tables).
    """
    all_tables = dict(tables if tables is not None else Model.metadata.tables)
    pg_settings(conn)
    count = 0
    for record in records:
        table = all_tables.get(str(record["t"]))
        if table is None:
            raise ValueError(f"unknown table {record['t']!r} in the change set")
        op = record["op"]
        enc = record.get("enc")
        if enc == PG_TEXT and conn.dialect.name != "postgresql":
            raise ValueError("a PostgreSQL change set cannot be applied here")
        if op == "upsert":
            rows = _rows_for_insert(table, record["rows"], enc)
            if rows:
                conn.execute(_insert(conn, table, enc), rows)
            count += len(rows)
        elif op == "delete":
            pk = _pk_columns(table)
            for key in record["keys"]:
                values = decode_row(table, key)
                conn.execute(delete(table).where(*[c == values[c.name] for c in pk]))
            count += len(record["keys"])
        elif op == "replace":
            column = table.columns[str(record["column"])]
            parents = [decode(column, p) for p in record["parents"]]
            conn.execute(delete(table).where(column.in_(parents)))
            rows = _rows_for_insert(table, record["rows"], enc)
            if rows:
                conn.execute(_insert(conn, table, enc), rows)
            count += len(rows)
        else:
            raise ValueError(f"unknown change-set operation {op!r}")
    return count


def carried_stats(
    conn: Connection, records: Iterable[Mapping[str, Any]], wanted: set[str]
) -> dict[str, dict[str, Any]]:
    """For the tables in `wanted`: the rows a change set carries, as they are now in
    the database behind `conn` (count + checksum, comparable with `ChangeWriter`)."""
    all_tables = tables()
    keys: dict[str, dict[tuple[Any, ...], None]] = defaultdict(dict)
    for record in records:
        name = str(record["t"])
        if name not in wanted or record["op"] == "delete":
            continue
        table = all_tables[name]
        for row in record.get("rows", ()):
            keys[name][native_key(table, row)] = None
    out: dict[str, dict[str, Any]] = {}
    for name in wanted:
        columns = compared_columns().get(name) or []
        found = _fetch_by_keys(conn, all_tables[name], keys.get(name, {}))
        total = sum(row_hash(encode_row(r), columns) for r in found.values())
        out[name] = {"rows": len(found), "checksum": str(total), "scope": "carried"}
    return out
