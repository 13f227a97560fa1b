"""save_form on PostgreSQL in one statement: write id, versioned upsert and audit row.

The general path (`service.save_form` inside `run_tx_async` + `idempotent_write`) costs a
BEGIN, a write-id claim, a locking SELECT, the ORM flush of the form and of its audit
row, the outcome UPDATE and a COMMIT. Here the same write is one statement with
data-modifying CTEs, sent in autocommit mode (one round trip, atomic):

- `old` locks the form row (`FOR UPDATE`; a concurrent save of the same form waits and
  then sees the winner's row, READ COMMITTED);
- `plan` decides what happens, exactly as the general path does: `create`, `update`
  (data or author really changed: version + 1), `unchanged` (no version bump, no audit
  row), `conflict` (stale expected version without `force`) or `prior` (the write id
  is already recorded);
- `ins` / `upd` apply it, `aud` writes the audit row (same values as `Repository`),
  `del` / `del_aud` discard the saver's drafts of the form (one `delete` audit row
  each, as `drafts.discard` does) when the save clears drafts,
  `rec` records the write id with the response a replay returns.

`rec` has no ON CONFLICT: two concurrent saves under one write id both pass `plan`
(neither sees the other's uncommitted record), the second one fails on the unique index
when the first commits, and its whole statement - form update and audit row included - is
undone. The retry sees `prior`. A retry after a connection lost during the implicit commit
likewise sees `prior`: exactly once.

`prior` and `conflict` change nothing here; the caller answers them through the general
path (replay, or 409 with both versions).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ballast_common.contracts import FormRead, FormSave
from ballast_common.db import DB, WriteContext, fingerprint
from ballast_common.db.statement import PRIOR_WRITE, fetchrow, iso_utc
from ballast_common.models import utcnow

OPERATION = "forms.save"

# $1 write id (NULL: not idempotent)  $2 form id   $3 data (json text)
# $4 updated_by                       $5 audit user $6 expected version  $7 force
# $8 now                              $9 now (iso)  $10 new row id       $11 fingerprint
# $12 correlation id  $13 trace id    $14 ip        $15 user agent  $16 clear drafts
# Constant fragments only; every value is a $n parameter.
SAVE_FORM_SQL = f"""
WITH {PRIOR_WRITE},
old AS MATERIALIZED (
    SELECT id, form_id, data, updated_by, version, created_at, updated_at
    FROM forms WHERE form_id = $2::varchar
    FOR UPDATE
),
cmp AS MATERIALIZED (
    SELECT o.*,
        o.data IS DISTINCT FROM $3::jsonb AS data_changed,
        o.updated_by IS DISTINCT FROM $4::uuid AS by_changed,
        $6::int IS NOT NULL AND $6::int <> o.version AS stale
    FROM (SELECT 1) AS one LEFT JOIN old AS o ON true
),
plan AS MATERIALIZED (
    SELECT c.*,
        CASE
            WHEN EXISTS (SELECT 1 FROM prior) THEN 'prior'
            WHEN c.id IS NULL THEN
                CASE WHEN $6::int IS NULL OR $6::int = 0 OR $7::bool
                    THEN 'create' ELSE 'conflict' END
            WHEN c.stale AND NOT $7::bool THEN 'conflict'
            WHEN c.data_changed OR c.by_changed THEN 'update'
            ELSE 'unchanged'
        END AS kind,
        CASE WHEN c.stale THEN jsonb_build_object(
            'expected_version', $6::int,
            'current_version', c.version,
            'current', jsonb_build_object(
                'id', c.id, 'form_id', c.form_id, 'data', c.data,
                'updated_by', c.updated_by, 'version', c.version,
                'created_at', {iso_utc("c.created_at")},
                'updated_at', {iso_utc("c.updated_at")}))
        END AS overwrote
    FROM cmp AS c
),
ins AS (
    INSERT INTO forms (id, form_id, data, updated_by, version, created_at, updated_at)
    SELECT $10::uuid, $2::varchar, $3::jsonb, $4::uuid, 1, $8::timestamptz, $8::timestamptz
    FROM plan WHERE kind = 'create'
    RETURNING id
),
upd AS (
    UPDATE forms AS f
    SET data = $3::jsonb, updated_by = $4::uuid, version = p.version + 1,
        updated_at = $8::timestamptz
    FROM plan AS p
    WHERE p.kind = 'update' AND f.id = p.id
    RETURNING f.id
),
aud AS (
    INSERT INTO audit_log (user_id, action, resource_type, resource_id, old_values,
        new_values, "timestamp", correlation_id, trace_id, ip_address, user_agent,
        write_id)
    SELECT $5::uuid, p.kind, 'forms',
        CASE WHEN p.kind = 'create' THEN $10::uuid ELSE p.id END::text,
        CASE WHEN p.kind = 'update' THEN
            CASE WHEN p.data_changed THEN jsonb_build_object('data', p.data)
                ELSE '{{}}'::jsonb END
            || CASE WHEN p.by_changed THEN jsonb_build_object('updated_by', p.updated_by)
                ELSE '{{}}'::jsonb END
            || jsonb_build_object('version', p.version,
                'updated_at', {iso_utc("p.updated_at")})
        END,
        CASE WHEN p.kind = 'create' THEN jsonb_build_object(
                'id', $10::uuid, 'form_id', $2::varchar, 'data', $3::jsonb,
                'updated_by', $4::uuid, 'version', 1,
                'created_at', $9::text, 'updated_at', $9::text)
        ELSE
            CASE WHEN p.data_changed THEN jsonb_build_object('data', $3::jsonb)
                ELSE '{{}}'::jsonb END
            || CASE WHEN p.by_changed THEN jsonb_build_object('updated_by', $4::uuid)
                ELSE '{{}}'::jsonb END
            || jsonb_build_object('version', p.version + 1, 'updated_at', $9::text)
        END,
        $8::timestamptz, $12::varchar, $13::varchar, $14::varchar, $15::varchar,
        $1::varchar
    FROM plan AS p WHERE p.kind IN ('create', 'update')
),
del AS (
    DELETE FROM drafts AS d
    USING plan AS p
    WHERE $16::bool AND p.kind IN ('create', 'update', 'unchanged')
        AND d.user_id = $4::uuid AND d.form_id = $2::varchar
    RETURNING d.*
),
del_aud AS (
    INSERT INTO audit_log (user_id, action, resource_type, resource_id, old_values,
        new_values, "timestamp", correlation_id, trace_id, ip_address, user_agent,
        write_id)
    SELECT $5::uuid, 'delete', 'drafts', d.id::text,
        jsonb_build_object('id', d.id, 'user_id', d.user_id, 'form_id', d.form_id,
            'field', d.field, 'value', d.value, 'version', d.version,
            'client_seq', d.client_seq, 'updated_at', {iso_utc("d.updated_at")}),
        NULL, $8::timestamptz, $12::varchar, $13::varchar, $14::varchar, $15::varchar,
        $1::varchar
    FROM del AS d
),
outcome AS (
    SELECT p.kind,
        CASE WHEN p.kind = 'create' THEN 201 ELSE 200 END AS status_code,
        CASE WHEN p.kind IN ('create', 'update', 'unchanged') THEN jsonb_build_object(
            'form_id', $2::varchar,
            'data', CASE WHEN p.kind = 'unchanged' THEN p.data ELSE $3::jsonb END,
            'version', CASE p.kind WHEN 'create' THEN 1 WHEN 'update' THEN p.version + 1
                ELSE p.version END,
            'updated_at', CASE WHEN p.kind = 'unchanged'
                THEN {iso_utc("p.updated_at")} ELSE $9::text END,
            'updated_by', CASE WHEN p.kind = 'unchanged' THEN p.updated_by
                ELSE $4::uuid END,
            'overwrote', CASE WHEN p.kind = 'create' THEN NULL ELSE p.overwrote END)
        END AS response,
        CASE WHEN p.kind = 'create' THEN $10::uuid ELSE p.id END AS id
    FROM plan AS p
),
rec AS (
    INSERT INTO write_ids (write_id, user_id, operation, fingerprint, status_code,
        response, created_at)
    SELECT $1::varchar, $5::uuid, '{OPERATION}', $11::varchar, o.status_code,
        o.response, $8::timestamptz
    FROM outcome AS o
    WHERE $1::varchar IS NOT NULL AND o.response IS NOT NULL
)
SELECT kind, status_code, response::text AS response, id,
    (SELECT array_agg(id::text) FROM del) AS drafts
FROM outcome
"""  # noqa: S608


def payload(form_id: str, body: FormSave) -> dict[str, Any]:
    """What the write id's fingerprint covers (the same as the general path's)."""
    return {"form_id": form_id, **body.model_dump(mode="json")}


async def save_form(
    db: DB,
    ctx: WriteContext,
    user_id: uuid.UUID,
    form_id: str,
    body: FormSave,
    write_id: str | None,
) -> tuple[int, FormRead, list[tuple[str, str]]] | None:
    """Save in one statement (clearing my drafts of the form too when asked).

    Returns:
        (status, form, the (resource type, id) pairs it changed), or None when the
        general path must answer: a replay (write id already recorded) or a conflict.
    """
    now = utcnow()
    row = await fetchrow(
        db,
        SAVE_FORM_SQL,
        write_id,
        form_id,
        json.dumps(body.data, separators=(",", ":")),
        user_id,
        ctx.user_id,
        body.expected_version,
        body.force,
        now,
        now.isoformat(),
        uuid.uuid4(),
        fingerprint(payload(form_id, body)) if write_id is not None else "",
        ctx.correlation_id,
        ctx.trace_id,
        ctx.ip,
        ctx.user_agent,
        body.clear_drafts,
    )
    if row is None or row["kind"] in ("prior", "conflict"):
        return None
    form = FormRead.model_validate_json(row["response"])
    # Cache tags of what the statement changed (as `UnitOfWork.audit` would record them).
    touched = [("drafts", draft_id) for draft_id in row["drafts"] or ()]
    if row["kind"] in ("create", "update"):
        touched.append(("forms", str(row["id"])))
    return int(row["status_code"]), form, touched
