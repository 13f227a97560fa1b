"""Incrementals carry every value PostgreSQL can hold, exactly: ±infinity and year-1
dates and timestamps, NaN and huge numerics, bytea, JSON (real PostgreSQL)."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Date,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from ballast_backup import changes
from ballast_backup.dbio import Target
from ballast_common.db.engine import DB
from ballast_common.models import AuditLog, utcnow
from ballast_testing.servers import PostgresServer
from tests.backup.conftest import Env
from tests.backup.helpers import create_projects, seed, state, state_of

pytestmark = pytest.mark.integration


def _audited_sql(db: DB, statement: str, project_id: uuid.UUID) -> None:
    """A write the application made with SQL, audited like every write."""
    with db.engine.begin() as conn:
        conn.execute(text(statement), {"id": project_id})
        conn.execute(
            text(
                "INSERT INTO audit_log (action, resource_type, resource_id, "
                "old_values, new_values, timestamp) "
                "VALUES ('update', 'projects', :rid, NULL, '{}', now())"
            ),
            {"rid": str(project_id)},
        )


ODD_PROJECTS = [
    "start_date = 'infinity', deleted_at = '-infinity', budget = 'NaN'",
    "start_date = '-infinity', deleted_at = 'infinity', "
    'tags = \'["\\u00e9", {"k": [1.5e300, null, true]}, ""]\'',
    "start_date = '0001-01-01', deleted_at = '0001-01-01 00:00:00+00', "
    "description = E'tab\\tnew\\nline \\u2713 \\\\x00'",
    "start_date = '4713-01-01 BC', updated_at = '294276-12-31 23:59:59.999999+00', "
    "budget = 999999999999.99",
    "tags = 'null', budget = -999999999999.99",
]


def test_incremental_after_extreme_values_restores_exactly(pg_env: Env) -> None:
    seed(pg_env.db)
    ids = create_projects(pg_env.db, len(ODD_PROJECTS) + 1, "odd")
    backups = pg_env.backups()
    # The first odd row lands before the full, so the incrementals build on it.
    _audited_sql(
        pg_env.db, f"UPDATE projects SET {ODD_PROJECTS[2]} WHERE id = :id", ids[-1]
    )
    backups.snapshot_db("full")
    for statement, project_id in zip(ODD_PROJECTS, ids, strict=False):
        _audited_sql(
            pg_env.db, f"UPDATE projects SET {statement} WHERE id = :id", project_id
        )
    first = state(pg_env.db)
    incr = backups.snapshot_db("incremental")
    assert incr.status == "good"
    _audited_sql(
        pg_env.db,
        "UPDATE projects SET start_date = '0001-01-01', budget = 'NaN' WHERE id = :id",
        ids[-1],
    )
    final = state(pg_env.db)
    second = backups.snapshot_db("incremental")
    assert second.status == "good"
    assert second.parent_id == incr.id
    assert state_of(backups.restore(incr.id, until=incr.created).target) == first
    restored = backups.restore(second.id).target
    assert state_of(restored) == final
    db = DB(restored)
    try:
        with db.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT start_date::text, deleted_at::text, budget::text "
                    "FROM projects WHERE id = :id"
                ),
                {"id": ids[0]},
            ).one()
    finally:
        db.dispose()
    assert tuple(row) == ("infinity", "-infinity", "NaN")


ODDITIES = Table(
    "oddities",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("d", Date),
    Column("ts", TIMESTAMP(timezone=True)),
    Column("n", Numeric),
    Column("f", Float),
    Column("b", LargeBinary),
    Column("j", JSONB),
    Column("t", Text),
)
ODD_VALUES = [
    "(1, 'infinity', '-infinity', 'NaN', 'NaN', '\\x00ff10'::bytea, "
    "'{\"a\": [1, 2.50, \"\\u00e9\"]}', E'\\t')",
    "(2, '-infinity', 'infinity', 'Infinity', '-Infinity', ''::bytea, 'null', '')",
    "(3, '0001-01-01', '0001-01-01 00:00:00+00', "
    "1e130000 + 0.000000000000000000000000000000000000001, 1e-320, "
    "decode(repeat('ab', 5000), 'hex'), '[]', NULL)",
    "(4, '5874897-12-31', '1999-12-31 23:59:59.999999+00', -0.0, -0.0, NULL, NULL, "
    "repeat('x', 100000))",
]


def _roundtrip(conn: Connection, dest: Connection) -> None:
    keys = [(i,) for i in range(1, len(ODD_VALUES) + 1)]
    images = changes._fetch_by_keys(conn, ODDITIES, keys)
    buf = io.BytesIO()
    writer = changes.ChangeWriter(buf)
    writer.write(
        {
            "t": "oddities",
            "op": "upsert",
            "enc": changes.encoding(conn),
            "rows": [changes.encode_row(r) for r in images.values()],
        }
    )
    writer.close()
    records = [
        json.loads(line) for line in gzip.decompress(buf.getvalue()).splitlines()
    ]
    changes.apply(dest, records, tables={"oddities": ODDITIES})


def _rows(conn: Connection) -> list[Any]:
    return list(
        conn.execute(text("SELECT o::text FROM oddities o ORDER BY id")).scalars()
    )


def test_change_sets_carry_every_postgres_value(
    pg_env: Env, postgres_server: PostgresServer
) -> None:
    name = f"{pg_env.db.url.database}_odd"
    dest_url = postgres_server.create_database(name)
    source = Target.parse(str(pg_env.db.url)).engine()
    dest = Target.parse(dest_url).engine()
    try:
        with source.begin() as conn:
            ODDITIES.create(conn)
            conn.execute(text("INSERT INTO oddities VALUES " + ", ".join(ODD_VALUES)))
        with dest.begin() as conn:
            ODDITIES.create(conn)
            # An older image of row 1 is replaced (upsert).
            conn.execute(text("INSERT INTO oddities (id, n) VALUES (1, 5)"))
        with source.begin() as conn, dest.begin() as out:
            _roundtrip(conn, out)
        with source.connect() as conn, dest.connect() as out:
            want = _rows(conn)
            assert _rows(out) == want
        assert "NaN" in want[0]
        assert "infinity" in want[1]
    finally:
        source.dispose()
        dest.dispose()
        postgres_server.drop_database(name)


def test_child_sets_replayed_from_text_images(env: Env) -> None:
    """Role changes (audited on the user / role) replace the child rows as a set."""
    seed(env.db)
    backups = env.backups()
    backups.snapshot_db("full")
    with env.db.engine.begin() as conn:
        admin, role = conn.execute(
            text(
                "SELECT u.id, r.id FROM users u, roles r WHERE u.username = 'admin' "
                "ORDER BY r.id LIMIT 1"
            )
        ).one()
        perms = conn.execute(text("SELECT id FROM permissions")).scalars().all()
        conn.execute(text("DELETE FROM user_roles WHERE user_id = :u"), {"u": admin})
        conn.execute(
            text("INSERT INTO user_roles (user_id, role_id) VALUES (:u, :r)"),
            {"u": admin, "r": role},
        )
        conn.execute(
            text("DELETE FROM role_permissions WHERE role_id = :r"), {"r": role}
        )
        conn.execute(
            text(
                "INSERT INTO role_permissions (role_id, permission_id) VALUES (:r, :p)"
            ),
            [{"r": role, "p": p} for p in perms[:2]],
        )
        for kind, rid in (("users", str(admin)), ("roles", str(role))):
            conn.execute(
                insert(AuditLog.__table__).values(
                    action="roles_changed",
                    resource_type=kind,
                    resource_id=rid,
                    timestamp=utcnow(),
                )
            )
    expected = state(env.db)
    incr = backups.snapshot_db("incremental")
    assert incr.status == "good"
    assert incr.change_log["touched"] == {"roles": 1, "users": 1}
    assert state_of(backups.restore(incr.id).target) == expected
