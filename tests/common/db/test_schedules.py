"""Recurring jobs: validation, catch-up after downtime, and exactly-once ticks under two
concurrent schedulers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from ballast_common.db import DB, UnitOfWork, run_tx
from ballast_common.errors import ConflictError, ValidationError
from ballast_common.jobs import JobMessage, schedules
from ballast_common.models import AuditLog, Job, JobSchedule, JobScheduleRun

BASE = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


def _create(db: DB, name: str, cron: str, now: datetime = BASE, **kw: Any) -> Any:
    def work(uow: UnitOfWork) -> Any:
        return schedules.create(
            uow,
            name=name,
            task="demo.sleep",
            kwargs=kw.pop("kwargs", {"seconds": 0}),
            cron=cron,
            created_by=None,
            now=now,
            **kw,
        ).id

    return run_tx(work, db=db)


def _count(db: DB, stmt: Any) -> int:
    with db.session() as session:
        return int(session.execute(stmt).scalar_one())


@pytest.mark.parametrize(
    "cron",
    [
        "",
        " ",
        "* * * *",
        "* * * * * *",  # seconds: refused
        "61 * * * *",
        "*/0 * * * *",
        "-1 * * * *",
        "* * * * \x00",
        "0\x000 * * * *",
        "x" * 101,
        "9" * 5000,
        "@sometimes",
        "0 0 30 2 *",  # never runs
        "0 0 31 4 *",
        "1-99999999999999999999 * * * *",
    ],
)
def test_bad_cron_is_refused(cron: str) -> None:
    def parse() -> None:
        schedules.next_tick(schedules.check_cron(cron), "UTC", BASE)

    with pytest.raises(ValidationError) as err:
        parse()
    assert err.value.status == 422
    assert err.value.details["fields"] == ["cron"]


@pytest.mark.parametrize(
    "zone", ["", "Mars/Olympus", "../etc/passwd", "/etc/localtime", "UTC\x00", "x" * 65]
)
def test_bad_timezone_is_refused(zone: str) -> None:
    with pytest.raises(ValidationError) as err:
        schedules.check_timezone(zone)
    assert err.value.details["fields"] == ["timezone"]


def test_ticks_follow_the_time_zone_and_dst() -> None:
    # 02:30 Berlin does not exist on 2026-03-29: that day it runs at 03:00 (CEST).
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    first = schedules.next_tick("30 2 * * *", "Europe/Berlin", before)
    second = schedules.next_tick("30 2 * * *", "Europe/Berlin", first)
    assert first == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert second == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)
    assert schedules.check_cron("  @Daily ") == "@daily"
    assert schedules.check_cron("0   3 * *  1-5") == "0 3 * * 1-5"


def test_create_validates_and_audits(db: DB) -> None:
    sid = _create(db, "nightly", "0 3 * * *", timezone="Europe/Berlin")
    with db.session() as session:
        row = session.get(JobSchedule, sid)
        assert row is not None
        assert row.next_run_at == datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
    assert (
        _count(
            db,
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.resource_type == "job_schedules"),
        )
        == 1
    )
    with pytest.raises(ConflictError):
        _create(db, "nightly", "0 4 * * *")
    with pytest.raises(ValidationError, match="invalid parameters"):
        _create(db, "bad-params", "0 4 * * *", kwargs={"seconds": -1})
    with pytest.raises(ValidationError, match="unknown job"):
        run_tx(
            lambda uow: schedules.create(
                uow,
                name="bad-task",
                task="no.such",
                kwargs={},
                cron="@daily",
                created_by=None,
            ),
            db=db,
        )
    with pytest.raises(ValidationError):
        _create(db, "bad\x00name", "@daily")
    with pytest.raises(ValidationError):
        _create(db, "bad-timeout", "@daily", timeout=-5)


def test_pause_resume_and_edit(db: DB) -> None:
    sid = _create(db, "edit-me", "*/5 * * * *")

    def edit(**kw: Any) -> JobSchedule:
        def work(uow: UnitOfWork) -> JobSchedule:
            row = schedules.lock(uow, sid)
            assert row is not None
            return schedules.change(uow, row, **kw)

        return run_tx(work, db=db)

    paused = edit(enabled=False, now=BASE)
    assert paused.next_run_at is None
    # Paused: its ticks pass without a run.
    assert schedules.run_due(db, None, now=BASE + timedelta(hours=2)) == []
    later = BASE + timedelta(hours=3)
    resumed = edit(enabled=True, now=later)
    assert resumed.next_run_at == datetime(2026, 6, 1, 15, 5, tzinfo=UTC)
    stale = resumed.version - 1
    with pytest.raises(ConflictError):
        edit(cron="@hourly", expected_version=stale, now=later)
    hourly = edit(cron="@hourly", expected_version=resumed.version, now=later)
    assert hourly.next_run_at == datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
    with pytest.raises(ValidationError):
        edit(cron="0 0 30 2 *", now=later)
    run_tx(lambda uow: schedules.remove(uow, schedules.find(uow, "edit-me")), db=db)
    assert _count(db, select(func.count()).select_from(JobSchedule)) == 0


def test_missed_ticks_during_downtime_run_once(db: DB) -> None:
    sent: list[JobMessage] = []
    sid = _create(db, "every-5-min", "*/5 * * * *")
    first = datetime(2026, 6, 1, 12, 5, tzinfo=UTC)
    # Down for an hour: the ticks 12:05, 12:10, ..., 13:05 all passed.
    back = datetime(2026, 6, 1, 13, 7, tzinfo=UTC)
    runs = schedules.run_due(db, sent.append, now=back)
    assert len(runs) == 1
    assert runs[0].tick == first
    assert runs[0].missed == 12
    assert runs[0].job_id is not None
    assert [m.job_id for m in sent] == [str(runs[0].job_id)]
    # Again at the same time (another pass, another replica): nothing.
    assert schedules.run_due(db, sent.append, now=back) == []
    with db.session() as session:
        row = session.get(JobSchedule, sid)
        assert row is not None
        assert row.next_run_at == datetime(2026, 6, 1, 13, 10, tzinfo=UTC)
        assert row.last_job_id == runs[0].job_id
        job = session.get(Job, runs[0].job_id)
        assert job is not None
        assert job.tags == ["schedule", "every-5-min"]
    assert _count(db, select(func.count()).select_from(Job)) == 1
    # The next tick runs normally.
    assert len(schedules.run_due(db, sent.append, now=back + timedelta(minutes=3))) == 1


def test_a_tick_whose_job_cannot_start_is_recorded(db: DB) -> None:
    sid = _create(db, "broken", "@hourly")
    with db.engine.begin() as conn:
        # The task's parameters changed since (as after an upgrade): the tick fails.
        conn.execute(
            JobSchedule.__table__.update()
            .where(JobSchedule.id == sid)
            .values(kwargs={"no_such_param": 1})
        )
    runs = schedules.run_due(db, None, now=BASE + timedelta(hours=1))
    assert len(runs) == 1
    assert runs[0].job_id is None
    assert "invalid parameters" in (runs[0].error or "")
    with db.session() as session:
        row = session.get(JobSchedule, sid)
        assert row is not None
        assert row.last_error == runs[0].error
        assert row.next_run_at == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    assert _count(db, select(func.count()).select_from(Job)) == 0


@pytest.mark.timeout(120)
def test_two_concurrent_schedulers_run_each_tick_once(db: DB) -> None:
    """Two schedulers with their own engines race on every tick of 8 schedules."""
    names = [f"s{i}" for i in range(8)]
    for name in names:
        _create(db, name, "* * * * *")
    other = DB(db.url)
    ticks = 4
    handled: list[list[schedules.TickRun]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2, timeout=60)

    def scheduler(index: int, database: DB) -> None:
        try:
            for k in range(1, ticks + 1):
                barrier.wait()
                now = BASE + timedelta(minutes=k)
                handled[index].extend(schedules.run_due(database, None, now=now))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=scheduler, args=(0, db)),
        threading.Thread(target=scheduler, args=(1, other)),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=100)
    finally:
        other.dispose()
    assert not errors
    runs = handled[0] + handled[1]
    keys = [(r.schedule_id, r.tick) for r in runs]
    assert len(keys) == len(set(keys)) == len(names) * ticks
    assert all(r.missed == 0 for r in runs)
    assert _count(db, select(func.count()).select_from(Job)) == len(names) * ticks
    assert (
        _count(db, select(func.count()).select_from(JobScheduleRun))
        == len(names) * ticks
    )


def test_old_runs_are_pruned(db: DB) -> None:
    _create(db, "prune", "@hourly")
    schedules.run_due(db, None, now=BASE + timedelta(hours=1))
    assert schedules.prune_runs(db, now=BASE + timedelta(days=10)) == 0
    assert schedules.prune_runs(db, now=BASE + timedelta(days=40)) == 1
