"""Property: any interleaving of concurrent saves ends in one consistent row state.

Each example creates a fresh Project or Form row, then starts one thread per submission.
Every thread runs `run_tx` with `Repository.update` inside `uow.idempotent`, with a write id
from a small pool (so some are repeated, with the same payload, as a retrying client would),
a random expected version and a random on_conflict mode. Afterwards the audit trail must
explain the row exactly, and replaying every committed write id must change nothing.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ballast_common.db import DB, Replay, UnitOfWork, run_tx
from ballast_common.db.repository import OnConflict
from ballast_common.errors import ConflictError
from ballast_common.models import AuditLog, Form, Project, WriteRecord

from .helpers import audit_rows, load


@dataclass(frozen=True)
class Save:
    values: dict[str, Any]
    expected_version: int | None
    on_conflict: OnConflict


project_values = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["Alpha", "Beta", "Gamma"]),
        "priority": st.integers(1, 3),
    },
)
form_values = st.fixed_dictionaries(
    {"data": st.sampled_from([{}, {"a": 1}, {"a": 2}, {"b": [1]}])}
)


def saves(values: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Save]:
    return st.builds(
        Save,
        values=values,
        expected_version=st.none() | st.integers(1, 4),
        on_conflict=st.sampled_from(["overwrite", "reject"]),
    )


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[type[Project] | type[Form], list[Save], list[int]]:
    model: type[Project] | type[Form] = draw(st.sampled_from([Project, Form]))
    pool = draw(
        st.lists(
            saves(project_values if model is Project else form_values),
            min_size=1,
            max_size=4,
        )
    )
    submissions = draw(st.lists(st.integers(0, len(pool) - 1), min_size=2, max_size=6))
    return model, pool, submissions


FIELDS = {Project: ("name", "priority", "version"), Form: ("data", "version")}


def _submit(
    db: DB, model: type[Any], entity_id: uuid.UUID, write_id: str, save: Save
) -> Replay:
    payload = {
        "values": save.values,
        "expected_version": save.expected_version,
        "on_conflict": save.on_conflict,
    }

    def fn(uow: UnitOfWork) -> Replay:
        def work() -> tuple[int, dict[str, Any]]:
            result = uow.repo(model).update(
                entity_id,
                save.values,
                expected_version=save.expected_version,
                on_conflict=save.on_conflict,
            )
            return 200, {
                "version": result.entity.version,
                "changed": result.changed,
                "conflict": result.conflict is not None,
            }

        return uow.idempotent(write_id, "save", payload, work)

    return run_tx(fn, db=db, attempts=10, sleep=lambda _d: None)


def _check(
    db: DB,
    model: type[Any],
    entity_id: uuid.UUID,
    tag: str,
    pool: list[Save],
    submissions: list[int],
) -> None:
    write_ids = [f"{tag}-{i}" for i in range(len(pool))]
    outcomes: dict[int, list[Replay | ConflictError]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(submissions))

    def worker(index: int) -> None:
        try:
            barrier.wait(10)
            outcome: Replay | ConflictError
            try:
                outcome = _submit(db, model, entity_id, write_ids[index], pool[index])
            except ConflictError as exc:
                outcome = exc
            with lock:
                outcomes.setdefault(index, []).append(outcome)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in submissions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []

    with db.session() as session:
        stored = {
            r.write_id: r
            for r in session.query(WriteRecord).filter(
                WriteRecord.write_id.startswith(f"{tag}-")
            )
        }
    audits: list[AuditLog] = audit_rows(db, entity_id)
    assert audits[0].action == "create"
    updates = audits[1:]
    assert all(a.action == "update" for a in updates)

    # One audit row per effective change, each tagged with its write id.
    changed_ids = {wid for wid, rec in stored.items() if rec.response["changed"]}
    assert sorted(a.write_id or "" for a in updates) == sorted(changed_ids)

    # Replaying the audit trail from the create row gives the final row.
    state = {k: audits[0].new_values[k] for k in FIELDS[model]}  # type: ignore[index]
    for audit in updates:
        assert audit.old_values is not None
        assert audit.new_values is not None
        assert audit.old_values["version"] == state["version"]
        assert audit.new_values["version"] == state["version"] + 1
        for key, value in audit.old_values.items():
            if key in state:
                assert state[key] == value, key
        state.update({k: v for k, v in audit.new_values.items() if k in state})
    row = load(db, model, entity_id)
    assert {k: getattr(row, k) for k in FIELDS[model]} == state
    assert row.version == 1 + len(updates)

    # Every submission of one write id saw the same outcome; refused ones stored nothing.
    for index, results in outcomes.items():
        wid = write_ids[index]
        replies = [r for r in results if isinstance(r, Replay)]
        if wid in stored:
            assert replies, wid
            assert all(r.response == stored[wid].response for r in replies)
            assert sum(not r.replayed for r in replies) == 1
        else:
            assert not replies, wid
            assert pool[index].on_conflict == "reject"

    # Replaying every committed write id changes nothing.
    for index, wid in enumerate(write_ids):
        if wid in stored:
            again = _submit(db, model, entity_id, wid, pool[index])
            assert again.replayed
            assert again.response == stored[wid].response
    assert len(audit_rows(db, entity_id)) == len(audits)
    assert load(db, model, entity_id).version == row.version


@pytest.mark.timeout(240)
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_concurrent_saves_end_consistent(
    db: DB, scenario: tuple[type[Any], list[Save], list[int]]
) -> None:
    model, pool, submissions = scenario
    tag = uuid.uuid4().hex[:12]

    def create(uow: UnitOfWork) -> uuid.UUID:
        if model is Project:
            return uow.repo(Project).create(name="Alpha", priority=2).id
        return uow.repo(Form).create(form_id=f"form-{tag}", data={}).id

    entity_id = run_tx(create, db=db)
    _check(db, model, entity_id, tag, pool, submissions)
