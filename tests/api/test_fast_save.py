"""The one-statement form save on PostgreSQL (forms/fast.py): the same guarantees as the
general path - write id once, optimistic versions, one audit row per effective change -
under replays, races and a connection lost while the server commits."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from ballast_api.drafts import fast as drafts_fast
from ballast_api.forms import fast
from ballast_common.db import statement
from tests.api.conftest import Api, new_id
from tests.api.test_races import concurrently

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def kinds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds the one-statement path answered with (proves it ran)."""
    seen: list[str] = []
    original = statement.fetchrow

    async def spy(*args: Any, **kwargs: Any) -> Any:
        row = await original(*args, **kwargs)
        seen.append(row["kind"] if row is not None else "none")
        return row

    monkeypatch.setattr(fast, "fetchrow", spy)
    return seen


def save(api: Api, form: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = api.h("editor", **({"Idempotency-Key": key} if key else {}))
    return api.client.put(f"/v1/forms/{form}", json=body, headers=headers)


def audit(api: Api, form: str) -> list[Any]:
    return api.sql(
        "SELECT a.action, a.old_values, a.new_values, a.write_id, a.user_id, "
        "a.resource_id FROM audit_log a JOIN forms f ON a.resource_id = f.id::text "
        "WHERE f.form_id = :form ORDER BY a.id",
        form=form,
    )


def test_create_update_unchanged_each_one_statement_and_audited_once(
    api: Api, kinds: list[str]
) -> None:
    k1, k2, k3 = new_id(), new_id(), new_id()
    created = save(api, "fast.a", {"data": {"x": 1}, "expected_version": 0}, k1)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    updated = save(api, "fast.a", {"data": {"x": 2}, "expected_version": 1}, k2)
    assert updated.status_code == 200
    assert updated.json()["version"] == 2
    assert updated.json()["data"] == {"x": 2}
    assert updated.json()["overwrote"] is None
    same = save(api, "fast.a", {"data": {"x": 2}, "expected_version": 2}, k3)
    assert same.status_code == 200
    assert same.json()["version"] == 2  # nothing changed: no bump, no audit row
    assert kinds == ["create", "update", "unchanged"]

    rows = audit(api, "fast.a")
    assert [r[0] for r in rows] == ["create", "update"]
    assert [r[3] for r in rows] == [k1, k2]
    editor = api.sql("SELECT id FROM users WHERE username = 'editor'")[0][0]
    assert all(str(r[4]) == str(editor) for r in rows)
    create_new = rows[0][2]
    assert set(create_new) == {
        "id",
        "form_id",
        "data",
        "updated_by",
        "version",
        "created_at",
        "updated_at",
    }
    assert create_new["data"] == {"x": 1}
    assert create_new["version"] == 1
    assert create_new["id"] == rows[0][5]
    # Only what changed (the author did not), plus the bookkeeping columns.
    assert set(rows[1][1]) == {"data", "version", "updated_at"}
    assert rows[1][1]["data"] == {"x": 1}
    assert rows[1][1]["version"] == 1
    assert rows[1][2]["data"] == {"x": 2}
    assert rows[1][2]["version"] == 2
    assert rows[1][1]["updated_at"] == create_new["updated_at"]
    stored = api.sql(
        "SELECT status_code, operation FROM write_ids WHERE write_id IN (:a, :b, :c)",
        a=k1,
        b=k2,
        c=k3,
    )
    assert sorted(tuple(r) for r in stored) == [
        (200, "forms.save"),
        (200, "forms.save"),
        (201, "forms.save"),
    ]
    loaded = api.client.get("/v1/forms/fast.a", headers=api.h("editor")).json()
    assert loaded["version"] == 2
    assert loaded["data"] == {"x": 2}


def test_same_write_id_twice_applies_once_and_answers_the_same(
    api: Api, kinds: list[str]
) -> None:
    key = new_id()
    body = {"data": {"name": "once"}}
    first = save(api, "fast.b", body, key)
    second = save(api, "fast.b", body, key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert kinds == ["create", "prior"]  # the replay is answered by the general path
    assert len(audit(api, "fast.b")) == 1
    reused = save(api, "fast.b", {"data": {"name": "other"}}, key)
    assert reused.status_code == 422


def test_stale_version_is_409_and_force_reports_what_it_overwrote(
    api: Api, kinds: list[str]
) -> None:
    save(api, "fast.c", {"data": {"v": 1}})
    save(api, "fast.c", {"data": {"v": 2}, "expected_version": 1})
    stale = save(api, "fast.c", {"data": {"v": 3}, "expected_version": 1}, new_id())
    assert stale.status_code == 409
    forced = save(
        api, "fast.c", {"data": {"v": 3}, "expected_version": 1, "force": True}
    )
    assert forced.status_code == 200
    assert forced.json()["version"] == 3
    overwrote = forced.json()["overwrote"]
    assert overwrote["expected_version"] == 1
    assert overwrote["current_version"] == 2
    assert overwrote["current"]["data"] == {"v": 2}
    missing = save(api, "fast.none", {"data": {}, "expected_version": 4})
    assert missing.status_code == 409
    assert kinds == ["create", "update", "conflict", "update", "conflict"]
    assert [r[0] for r in audit(api, "fast.c")] == ["create", "update", "update"]


def test_concurrent_saves_on_one_version_exactly_one_wins(
    api: Api, kinds: list[str]
) -> None:
    save(api, "fast.d", {"data": {"n": -1}})
    results = concurrently(
        lambda i: save(
            api, "fast.d", {"data": {"n": i}, "expected_version": 1}, new_id()
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1
    assert codes.count(409) == len(codes) - 1
    winner = next(r for r in results if r.status_code == 200).json()
    assert winner["version"] == 2
    rows = audit(api, "fast.d")
    assert [r[0] for r in rows] == ["create", "update"]
    assert rows[1][2]["data"] == winner["data"]
    assert kinds.count("update") == 1


def test_concurrent_saves_with_one_write_id_apply_once(
    api: Api, kinds: list[str]
) -> None:
    save(api, "fast.e", {"data": {"n": 0}})
    key = new_id()
    results = concurrently(lambda _: save(api, "fast.e", {"data": {"n": 1}}, key))
    assert {r.status_code for r in results} == {200}
    assert len({r.text for r in results}) == 1
    assert [r[0] for r in audit(api, "fast.e")] == ["create", "update"]
    assert api.sql("SELECT version FROM forms WHERE form_id = 'fast.e'")[0][0] == 2
    assert kinds.count("update") == 1


def test_concurrent_last_write_wins_saves_are_each_audited(
    api: Api, kinds: list[str]
) -> None:
    results = concurrently(
        lambda i: save(api, "fast.f", {"data": {"n": i}}, new_id()), n=10
    )
    assert sorted(r.status_code for r in results).count(201) == 1
    versions = api.sql("SELECT version FROM forms WHERE form_id = 'fast.f'")[0][0]
    rows = audit(api, "fast.f")
    # Every effective change bumped the version once and has exactly one audit row.
    assert len(rows) == versions
    assert [r[2]["version"] for r in rows] == list(range(1, versions + 1))
    assert kinds.count("create") + kinds.count("update") == versions


def test_connection_lost_while_committing_applies_once(
    api: Api, kinds: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server committed but the answer never arrived: the retry sees the write id."""
    original = statement._fetchrow_once
    failed: list[bool] = []

    async def commit_then_drop(db: Any, sql: str, args: Any) -> Any:
        row = await original(db, sql, args)
        if not failed:
            failed.append(True)
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        return row

    monkeypatch.setattr(statement, "_fetchrow_once", commit_then_drop)
    key = new_id()
    resp = save(api, "fast.g", {"data": {"n": 1}}, key)
    assert resp.status_code == 201, resp.text
    assert failed == [True]
    assert kinds == ["prior"]  # the retried statement found its own write id
    assert len(audit(api, "fast.g")) == 1
    assert api.sql("SELECT version FROM forms WHERE form_id = 'fast.g'")[0][0] == 1
    again = save(api, "fast.g", {"data": {"n": 1}}, key)
    assert again.json() == resp.json()


def test_killed_connections_are_retried(api: Api, kinds: list[str]) -> None:
    save(api, "fast.h", {"data": {"n": 0}})
    api.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    resp = save(api, "fast.h", {"data": {"n": 1}, "expected_version": 1}, new_id())
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 2
    assert [r[0] for r in audit(api, "fast.h")] == ["create", "update"]
    assert kinds == ["create", "update"]


def test_saving_clears_my_drafts_of_the_form_in_the_same_statement(
    api: Api, kinds: list[str]
) -> None:
    items = [
        {"form_id": "fast.i", "field": "a", "value": 1, "seq": 1},
        {"form_id": "fast.i", "field": "b", "value": {"k": [1]}, "seq": 1},
        {"form_id": "fast.other", "field": "a", "value": 2, "seq": 1},
    ]
    api.client.put(
        "/v1/drafts",
        json={"items": items},
        headers=api.h("editor", **{"Idempotency-Key": new_id()}),
    )
    before = {
        r[0]: r[1]
        for r in api.sql(
            "SELECT field, id FROM drafts WHERE form_id = 'fast.i' ORDER BY field"
        )
    }
    key = new_id()
    resp = save(api, "fast.i", {"data": {"a": 1}}, key)
    assert resp.status_code == 201
    kept = save(api, "fast.i", {"data": {"a": 1}, "clear_drafts": False})
    assert kept.status_code == 200
    assert kinds == ["create", "unchanged"]
    drafts = api.client.get("/v1/drafts", headers=api.h("editor")).json()
    assert [(d["form_id"], d["field"]) for d in drafts] == [("fast.other", "a")]
    deleted = api.sql(
        "SELECT resource_id, old_values, new_values, write_id FROM audit_log "
        "WHERE resource_type = 'drafts' AND action = 'delete' ORDER BY resource_id"
    )
    assert sorted(r[0] for r in deleted) == sorted(str(v) for v in before.values())
    for resource_id, old, new, write_id in deleted:
        assert new is None
        assert write_id == key
        assert set(old) == {
            "id",
            "user_id",
            "form_id",
            "field",
            "value",
            "version",
            "client_seq",
            "updated_at",
        }
        assert old["id"] == resource_id
        assert old["form_id"] == "fast.i"
        assert old["value"] == {"a": 1, "b": {"k": [1]}}[old["field"]]


def test_a_conflict_clears_no_drafts(api: Api, kinds: list[str]) -> None:
    save(api, "fast.k", {"data": {"v": 1}})
    api.client.put(
        "/v1/drafts",
        json={"items": [{"form_id": "fast.k", "field": "v", "value": 2, "seq": 1}]},
        headers=api.h("editor", **{"Idempotency-Key": new_id()}),
    )
    stale = save(api, "fast.k", {"data": {"v": 2}, "expected_version": 7})
    assert stale.status_code == 409
    assert kinds == ["create", "conflict"]
    assert len(api.client.get("/v1/drafts", headers=api.h("editor")).json()) == 1


def test_an_error_that_is_not_transient_is_not_retried(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def broken(*_: Any) -> Any:
        calls.append(1)
        raise asyncpg.exceptions.UndefinedTableError('relation "forms" does not exist')

    monkeypatch.setattr(statement, "_fetchrow_once", broken)
    resp = save(api, "fast.j", {"data": {}})
    assert resp.status_code == 500
    assert calls == [1]


@pytest.fixture
def draft_kinds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Whether the one-statement drafts path answered (`applied`) or left a replay."""
    seen: list[str] = []
    original = statement.fetchrow

    async def spy(*args: Any, **kwargs: Any) -> Any:
        row = await original(*args, **kwargs)
        seen.append("replay" if row["replay"] else "applied")
        return row

    monkeypatch.setattr(drafts_fast, "fetchrow", spy)
    return seen


def put_drafts(api: Api, items: list[dict[str, Any]], key: str | None = None) -> Any:
    headers = api.h("editor", **({"Idempotency-Key": key} if key else {}))
    return api.client.put("/v1/drafts", json={"items": items}, headers=headers)


def draft_audit(api: Api) -> list[Any]:
    return api.sql(
        "SELECT a.action, a.old_values, a.new_values, a.write_id, d.field "
        "FROM audit_log a LEFT JOIN drafts d ON a.resource_id = d.id::text "
        "WHERE a.resource_type = 'drafts' ORDER BY a.id"
    )


def test_a_draft_batch_is_one_statement_audited_per_change(
    api: Api, draft_kinds: list[str]
) -> None:
    key = new_id()
    first = put_drafts(
        api,
        [
            {"form_id": "fd", "field": "a", "value": 1, "seq": 1},
            {"form_id": "fd", "field": "b", "value": "x", "seq": 1},
            {"form_id": "fd", "field": "a", "value": 2, "seq": 2},  # newest of a wins
            {"form_id": "fd", "field": "c", "value": None, "seq": 1},
        ],
        key,
    )
    assert first.status_code == 200, first.text
    assert first.json()["items"] == [
        {"form_id": "fd", "field": "a", "version": 1, "applied": True},
        {"form_id": "fd", "field": "b", "version": 1, "applied": True},
        {"form_id": "fd", "field": "c", "version": 1, "applied": True},
    ]
    again = put_drafts(
        api, [{"form_id": "fd", "field": "a", "value": 1, "seq": 1}], key
    )
    assert again.status_code == 422  # the write id was used for another batch
    replay = put_drafts(
        api,
        [
            {"form_id": "fd", "field": "a", "value": 1, "seq": 1},
            {"form_id": "fd", "field": "b", "value": "x", "seq": 1},
            {"form_id": "fd", "field": "a", "value": 2, "seq": 2},
            {"form_id": "fd", "field": "c", "value": None, "seq": 1},
        ],
        key,
    )
    assert replay.json() == first.json()
    rows = draft_audit(api)
    assert [(r[0], r[4]) for r in rows] == [
        ("create", "a"),
        ("create", "b"),
        ("create", "c"),
    ]
    assert rows[0][2]["value"] == 2
    assert rows[0][2]["client_seq"] == 2
    assert rows[0][3] == key
    assert set(rows[0][2]) == {
        "id",
        "user_id",
        "form_id",
        "field",
        "value",
        "version",
        "client_seq",
        "updated_at",
    }

    second = put_drafts(
        api,
        [
            {"form_id": "fd", "field": "a", "value": 3, "seq": 3},  # changed
            {"form_id": "fd", "field": "b", "value": "x", "seq": 5},  # same value
            {"form_id": "fd", "field": "c", "value": "late", "seq": 0},  # stale
        ],
        new_id(),
    )
    assert second.json()["items"] == [
        {"form_id": "fd", "field": "a", "version": 2, "applied": True},
        {"form_id": "fd", "field": "b", "version": 1, "applied": False},
        {"form_id": "fd", "field": "c", "version": 1, "applied": False},
    ]
    rows = draft_audit(api)
    assert len(rows) == 4
    action, old, new, _, field = rows[3]
    assert (action, field) == ("update", "a")
    assert set(old) == set(new) == {"value", "client_seq", "version", "updated_at"}
    assert (old["value"], old["client_seq"], old["version"]) == (2, 2, 1)
    assert (new["value"], new["client_seq"], new["version"]) == (3, 3, 2)
    assert old["updated_at"] == rows[0][2]["updated_at"]
    stored = {
        d["field"]: (d["value"], d["seq"], d["version"])
        for d in api.client.get("/v1/drafts?form_id=fd", headers=api.h("editor")).json()
    }
    assert stored == {"a": (3, 3, 2), "b": ("x", 5, 1), "c": (None, 1, 1)}
    assert draft_kinds == ["applied", "replay", "replay", "applied"]


def test_one_draft_batch_write_id_from_many_clients_applies_once(
    api: Api, draft_kinds: list[str]
) -> None:
    key = new_id()
    items = [
        {"form_id": "fr", "field": f"f{n}", "value": n, "seq": 1} for n in range(5)
    ]
    results = concurrently(lambda _: put_drafts(api, items, key), n=10)
    assert {r.status_code for r in results} == {200}
    assert len({r.text for r in results}) == 1
    assert len(draft_audit(api)) == 5
    assert draft_kinds.count("applied") == 1
