"""PUT /v1/drafts on PostgreSQL in one statement: a batch of N widget values, its write id
and one audit row per value that really changed, in one round trip.

The same decisions as `service.upsert`, per value (the newest of a key when a batch
repeats it): no row yet -> `create`; an older client sequence than stored -> `stale`
(ignored); the same value -> `same` (only the sequence is remembered: no version bump, no
audit row); otherwise `update` (version + 1). The rows are locked (`FOR UPDATE`) before
the decision. As in the form save (forms/fast.py), the write-id record has no ON
CONFLICT: a concurrent request under the same write id undoes its whole statement on the
unique index and its retry finds the record; a lost race to create the same draft field
is retried too and then sees the winner's row. A recorded write id (a replay) changes
nothing here and the general path answers it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ballast_common.contracts import DraftBatch, DraftBatchResult
from ballast_common.contracts.drafts import DraftWrite
from ballast_common.db import DB, WriteContext, fingerprint
from ballast_common.db.statement import PRIOR_WRITE, fetchrow, iso_utc
from ballast_common.models import utcnow

OPERATION = "drafts.upsert"

# $1 write id  $2 user  $3 form ids  $4 fields  $5 values (json text)  $6 sequences
# $7 new row ids  $8 now  $9 now (iso)  $10 audit user  $11 fingerprint
# $12 correlation id  $13 trace id  $14 ip  $15 user agent
# Constant fragments only; every value is a $n parameter.
UPSERT_DRAFTS_SQL = f"""
WITH {PRIOR_WRITE},
input AS MATERIALIZED (
    SELECT * FROM unnest($3::varchar[], $4::varchar[], $5::text[], $6::bigint[],
        $7::uuid[]) WITH ORDINALITY AS t(form_id, field, value_text, seq, new_id, ord)
),
old AS MATERIALIZED (
    SELECT d.id, d.form_id, d.field, d.value, d.version, d.client_seq, d.updated_at
    FROM drafts AS d JOIN input AS i ON d.form_id = i.form_id AND d.field = i.field
    WHERE d.user_id = $2::uuid
    FOR UPDATE OF d
),
plan AS MATERIALIZED (
    SELECT i.form_id, i.field, i.value_text::jsonb AS value, i.seq, i.new_id, i.ord,
        o.id, o.value AS old_value, o.version AS old_version, o.client_seq AS old_seq,
        o.updated_at AS old_updated_at,
        CASE
            WHEN EXISTS (SELECT 1 FROM prior) THEN 'prior'
            WHEN o.id IS NULL THEN 'create'
            WHEN i.seq < o.client_seq THEN 'stale'
            WHEN o.value IS NOT DISTINCT FROM i.value_text::jsonb THEN 'same'
            ELSE 'update'
        END AS kind
    FROM input AS i LEFT JOIN old AS o ON o.form_id = i.form_id AND o.field = i.field
),
ins AS (
    INSERT INTO drafts (id, user_id, form_id, field, value, version, client_seq,
        updated_at)
    SELECT new_id, $2::uuid, form_id, field, value, 1, seq, $8::timestamptz
    FROM plan WHERE kind = 'create'
    RETURNING id
),
upd AS (
    UPDATE drafts AS d
    SET value = p.value, client_seq = p.seq, updated_at = $8::timestamptz,
        version = CASE WHEN p.kind = 'update' THEN p.old_version + 1
            ELSE p.old_version END
    FROM plan AS p
    WHERE d.id = p.id
        AND (p.kind = 'update' OR (p.kind = 'same' AND p.seq <> p.old_seq))
    RETURNING d.id
),
aud AS (
    INSERT INTO audit_log (user_id, action, resource_type, resource_id, old_values,
        new_values, "timestamp", correlation_id, trace_id, ip_address, user_agent,
        write_id)
    SELECT $10::uuid, p.kind, 'drafts',
        CASE WHEN p.kind = 'create' THEN p.new_id ELSE p.id END::text,
        CASE WHEN p.kind = 'update' THEN
            jsonb_build_object('value', p.old_value)
            || CASE WHEN p.seq <> p.old_seq
                THEN jsonb_build_object('client_seq', p.old_seq) ELSE '{{}}'::jsonb END
            || jsonb_build_object('version', p.old_version,
                'updated_at', {iso_utc("p.old_updated_at")})
        END,
        CASE WHEN p.kind = 'create' THEN jsonb_build_object(
                'id', p.new_id, 'user_id', $2::uuid, 'form_id', p.form_id,
                'field', p.field, 'value', p.value, 'version', 1,
                'client_seq', p.seq, 'updated_at', $9::text)
        ELSE
            jsonb_build_object('value', p.value)
            || CASE WHEN p.seq <> p.old_seq
                THEN jsonb_build_object('client_seq', p.seq) ELSE '{{}}'::jsonb END
            || jsonb_build_object('version', p.old_version + 1, 'updated_at', $9::text)
        END,
        $8::timestamptz, $12::varchar, $13::varchar, $14::varchar, $15::varchar,
        $1::varchar
    FROM plan AS p WHERE p.kind IN ('create', 'update')
    ORDER BY p.ord
),
outcome AS (
    SELECT jsonb_build_object('items', coalesce(jsonb_agg(jsonb_build_object(
            'form_id', p.form_id, 'field', p.field,
            'version', CASE p.kind WHEN 'create' THEN 1
                WHEN 'update' THEN p.old_version + 1 ELSE p.old_version END,
            'applied', p.kind IN ('create', 'update')) ORDER BY p.ord), '[]'::jsonb))
        AS response,
        coalesce(array_agg(CASE WHEN p.kind = 'create' THEN p.new_id ELSE p.id END::text)
            FILTER (WHERE p.kind IN ('create', 'update')), '{{}}') AS touched
    FROM plan AS p
),
rec AS (
    INSERT INTO write_ids (write_id, user_id, operation, fingerprint, status_code,
        response, created_at)
    SELECT $1::varchar, $10::uuid, '{OPERATION}', $11::varchar, 200, o.response,
        $8::timestamptz
    FROM outcome AS o
    WHERE $1::varchar IS NOT NULL AND NOT EXISTS (SELECT 1 FROM prior)
)
SELECT EXISTS (SELECT 1 FROM prior) AS replay, o.response::text AS response, o.touched
FROM outcome AS o
"""  # noqa: S608


def _newest(batch: DraftBatch) -> list[DraftWrite]:
    """One value per key: the newest sequence (the later one on a tie), first-seen order."""
    latest: dict[tuple[str, str], DraftWrite] = {}
    for item in batch.items:
        key = (item.form_id, item.field)
        if key not in latest or item.seq >= latest[key].seq:
            latest[key] = item
    return list(latest.values())


async def upsert(
    db: DB,
    ctx: WriteContext,
    user_id: uuid.UUID,
    batch: DraftBatch,
    write_id: str | None,
) -> tuple[DraftBatchResult, list[tuple[str, str]]] | None:
    """Apply a batch in one statement. Returns (result, the (type, id) pairs it changed),
    or None for a replay (the general path answers it)."""
    items = _newest(batch)
    now = utcnow()
    payload: Any = batch.model_dump(mode="json")
    row = await fetchrow(
        db,
        UPSERT_DRAFTS_SQL,
        write_id,
        user_id,
        [i.form_id for i in items],
        [i.field for i in items],
        [json.dumps(i.value, separators=(",", ":")) for i in items],
        [i.seq for i in items],
        [uuid.uuid4() for _ in items],
        now,
        now.isoformat(),
        ctx.user_id,
        fingerprint(payload) if write_id is not None else "",
        ctx.correlation_id,
        ctx.trace_id,
        ctx.ip,
        ctx.user_agent,
    )
    if row is None or row["replay"]:
        return None
    result = DraftBatchResult.model_validate_json(row["response"])
    return result, [("drafts", draft_id) for draft_id in row["touched"]]
