"""Table checksums on PostgreSQL: PostgreSQL's own row hash (`pg-hash`) where it works,
md5 of the text form for a table whose column types cannot be hashed and for manifests
written before (real PostgreSQL)."""

from __future__ import annotations

import pytest

from ballast_backup.dbio import MD5_TEXT, PG_HASH, list_tables, table_stats
from tests.backup.conftest import Env
from tests.backup.helpers import create_projects, seed

pytestmark = pytest.mark.integration

OLD_MD5 = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)"
    "::bigint), 0)::text FROM projects AS t"
)


def test_pg_hash_where_it_works_md5_where_a_type_has_no_hash(pg_env: Env) -> None:
    db = pg_env.db
    seed(db)
    create_projects(db, 5, "hashed")
    with db.engine.begin() as conn:
        # json (unlike jsonb) has no hash function.
        conn.exec_driver_sql("CREATE TABLE plain_json (id int PRIMARY KEY, doc json)")
        conn.exec_driver_sql("INSERT INTO plain_json VALUES (1, '{\"a\": 1}')")
    full = pg_env.backups().snapshot_db("full")
    assert full.status == "good", full.status_reason
    assert full.tables["projects"]["method"] == PG_HASH
    assert "method" not in full.tables["plain_json"]  # md5 of the text form
    # A restore is compared table by table the way each checksum was taken.
    restored = pg_env.backups().restore(full.id)
    assert restored.rows["plain_json"] == 1


def test_a_changed_value_changes_the_row_hash(pg_env: Env) -> None:
    db = pg_env.db
    seed(db)
    create_projects(db, 3, "before")
    with db.engine.begin() as conn:
        tables = dict.fromkeys(list_tables(conn))
        before = table_stats(conn, tables)
        assert before["projects"]["method"] == PG_HASH
        conn.exec_driver_sql(
            "UPDATE projects SET budget = budget + 0.01 "
            "WHERE id = (SELECT min(id::text)::uuid FROM projects)"
        )
        after = table_stats(conn, tables, {"projects": PG_HASH})
    assert after["projects"]["rows"] == before["projects"]["rows"]
    assert after["projects"]["checksum"] != before["projects"]["checksum"]


def test_manifests_without_a_method_are_checked_with_md5_as_before(
    pg_env: Env,
) -> None:
    """The checksums of manifests written before `pg-hash` (no method) are computed
    again exactly as then."""
    db = pg_env.db
    seed(db)
    create_projects(db, 4, "old")
    with db.engine.begin() as conn:
        count, total = conn.exec_driver_sql(OLD_MD5).one()
        for methods in ({}, {"projects": None}, {"projects": MD5_TEXT}):
            stats = table_stats(conn, {"projects": None}, methods)
            assert stats["projects"] == {"rows": count, "checksum": total}
