"""Recurring jobs: cron schedules in the database, each tick run exactly once.

Every worker's sweeper calls `run_due` on each pass, so several schedulers run at once
(one per worker replica). A tick is claimed by one conditional UPDATE::

    UPDATE job_schedules SET next_run_at = <next>, version = version + 1, ...
     WHERE id = :id AND enabled AND next_run_at = :due AND version = :version

Only one scheduler's UPDATE matches (PostgreSQL re-checks the WHERE clause on the row a
concurrent UPDATE committed; SQLite has one writer at a time, BEGIN IMMEDIATE); the
winner adds the tick's `job_schedule_runs` row, whose primary key (schedule, tick)
refuses a second run of the same tick even if the claim were bypassed, and enqueues the
job, all in one transaction. The job's message goes out after commit.

Catch-up after downtime: a schedule whose ticks passed while no scheduler ran starts
**one** job (for the oldest missed tick, with the number of later ticks it stands for in
``missed``), then goes on with the first tick after now. Pausing clears `next_run_at`;
resuming starts at the first tick after the resume (a paused period is not caught up).

Ticks are computed with croniter in the schedule's time zone (DST: a time that does not
exist that day runs at the first minute after the gap, a repeated hour runs once).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from sqlalchemy import delete, func, select, update

from ballast_common.db import DB, UnitOfWork, run_tx
from ballast_common.errors import AppError, ConflictError, NotFoundError
from ballast_common.errors import ValidationError as AppValidationError
from ballast_common.jobs.contract import JobCreate, Sender
from ballast_common.jobs.lifecycle import enqueue
from ballast_common.jobs.registry import validate_params
from ballast_common.models import JobSchedule, JobScheduleRun, Project, utcnow
from ballast_common.telemetry import get_logger

log = get_logger(__name__)

ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# Counting missed ticks stops here (a per-minute schedule down for weeks).
MAX_MISSED = 10_000
# Handled ticks are kept this long (history for the Jobs page; the claim does not need
# them: a tick older than next_run_at is never claimed again).
RUN_RETENTION = timedelta(days=30)
# Due schedules handled per pass and scheduler.
BATCH = 100
# A schedule must be able to run at least once in this long (refuses "0 0 30 2 *").
HORIZON_YEARS = 5
MAX_SCHEDULES = 1000


def check_cron(expression: str) -> str:
    """The expression, normalised (single spaces), if it is five cron fields or an alias.

    Raises:
        ValidationError: anything else (seconds or year fields included), 422.
    """
    if not isinstance(expression, str) or not expression.isprintable():
        raise _invalid("cron", "the cron expression must be printable text")
    text = " ".join(expression.split())
    if not text or len(text) > 100:
        raise _invalid("cron", "the cron expression must be 1 to 100 characters")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise _invalid(
                "cron",
                f"unknown cron alias {text!r}; use one of {', '.join(sorted(ALIASES))}",
            )
        return text.lower()
    if len(text.split(" ")) != 5:
        raise _invalid(
            "cron",
            f"{text!r} is not a cron expression: five fields "
            "(minute hour day-of-month month day-of-week) are needed",
        )
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC))
    # Untrusted text into a third-party parser: whatever it raises is a bad expression.
    except Exception as exc:
        raise _invalid("cron", f"invalid cron expression {text!r}: {exc}") from None
    return text


def check_timezone(name: str) -> ZoneInfo:
    """The IANA time zone `name`.

    Raises:
        ValidationError: an unknown or malformed name (422).
    """
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 64
        or not name.isprintable()
        or name.startswith(("/", "."))
        or ".." in name
    ):
        raise _invalid("timezone", "the time zone must be an IANA name, e.g. UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _invalid(
            "timezone", f"unknown time zone {name!r} (use an IANA name, e.g. UTC)"
        ) from None


def next_tick(cron: str, timezone: str, after: datetime) -> datetime:
    """The first tick of `cron` in `timezone` strictly after `after`, in UTC.

    Raises:
        ValidationError: the expression never matches within a few years (422).
    """
    zone = check_timezone(timezone)
    try:
        value = croniter(cron, after.astimezone(zone)).get_next(datetime)
    except CroniterBadDateError as exc:
        raise _invalid("cron", f"{cron!r} never runs: {exc}") from None
    except Exception as exc:  # see check_cron
        raise _invalid("cron", f"invalid cron expression {cron!r}: {exc}") from None
    if not isinstance(value, datetime) or value.year > after.year + HORIZON_YEARS:
        raise _invalid("cron", f"{cron!r} does not run within {HORIZON_YEARS} years")
    return value.astimezone(UTC)


def _ticks_between(cron: str, timezone: str, due: datetime, now: datetime) -> int:
    """How many ticks after `due` are <= `now` (capped at MAX_MISSED)."""
    zone = check_timezone(timezone)
    it = croniter(cron, due.astimezone(zone))
    count = 0
    while count < MAX_MISSED:
        tick = it.get_next(datetime)
        if tick.astimezone(UTC) > now:
            break
        count += 1
    return count


def _invalid(field: str, message: str) -> AppValidationError:
    return AppValidationError(message, details={"fields": [field]})


# --------------------------------------------------------------------------- CRUD


def create(
    uow: UnitOfWork,
    *,
    name: str,
    task: str,
    kwargs: dict[str, Any],
    cron: str,
    timezone: str = "UTC",
    enabled: bool = True,
    timeout: int | None = None,
    project_id: uuid.UUID | None = None,
    created_by: uuid.UUID | None,
    max_timeout: int | None = None,
    now: datetime | None = None,
) -> JobSchedule:
    """Add a schedule (audited); its first tick is the first one after now.

    Raises:
        ValidationError: bad cron, time zone, task, parameters or timeout (422).
        ConflictError: the name is taken (409).
        NotFoundError: no such project (404).
    """
    if not isinstance(name, str) or not name.isprintable() or not name.strip():
        raise _invalid("name", "the name must be printable text")
    if len(name) > 100 or name.strip() != name:
        raise _invalid(
            "name", "the name must be 1 to 100 characters without outer spaces"
        )
    cron = check_cron(cron)
    params = validate_params(task, kwargs)
    _check_timeout(timeout, max_timeout)
    first = next_tick(cron, timezone, now or utcnow())
    session = uow.session
    if session.execute(select(JobSchedule.id).where(JobSchedule.name == name)).first():
        raise ConflictError(
            f"a schedule named {name!r} exists", details={"fields": ["name"]}
        )
    total = session.execute(select(func.count()).select_from(JobSchedule)).scalar_one()
    if total >= MAX_SCHEDULES:
        raise AppValidationError(
            f"there are {total} schedules, the limit is {MAX_SCHEDULES}: remove some",
            details={"fields": ["name"], "max": MAX_SCHEDULES},
        )
    if project_id is not None and uow.repo(Project).get_by_id(project_id) is None:
        raise NotFoundError(
            f"project {project_id} not found", details={"id": str(project_id)}
        )
    return uow.repo(JobSchedule).create(
        name=name,
        task=task,
        kwargs=params,
        cron=cron,
        timezone=timezone,
        enabled=enabled,
        timeout=timeout,
        project_id=project_id,
        created_by=created_by,
        next_run_at=first if enabled else None,
    )


def _check_timeout(timeout: int | None, max_timeout: int | None) -> None:
    if timeout is None:
        return
    if timeout < 1 or (max_timeout is not None and timeout > max_timeout):
        raise _invalid(
            "timeout",
            f"timeout must be 1 to {max_timeout or 'the workers limit'} seconds",
        )


def change(
    uow: UnitOfWork,
    schedule: JobSchedule,
    *,
    cron: str | None = None,
    timezone: str | None = None,
    enabled: bool | None = None,
    kwargs: dict[str, Any] | None = None,
    timeout: int | None = None,
    expected_version: int | None = None,
    max_timeout: int | None = None,
    now: datetime | None = None,
) -> JobSchedule:
    """Edit, pause (enabled=False) or resume a schedule (locked by the caller); audited.

    A change of cron or time zone, and a resume, restart the ticks from now (nothing in
    the past is caught up); a pause clears the next run.

    Raises:
        ValidationError: bad values (422).
        ConflictError: `expected_version` is stale (409).
    """
    values: dict[str, Any] = {}
    new_cron = check_cron(cron) if cron is not None else schedule.cron
    new_zone = timezone if timezone is not None else schedule.timezone
    if timezone is not None:
        check_timezone(timezone)
    if cron is not None:
        values["cron"] = new_cron
    if timezone is not None:
        values["timezone"] = new_zone
    if kwargs is not None:
        values["kwargs"] = validate_params(schedule.task, kwargs)
    if timeout is not None:
        _check_timeout(timeout, max_timeout)
        values["timeout"] = timeout
    active = schedule.enabled if enabled is None else enabled
    values["enabled"] = active
    retime = (
        cron is not None
        or timezone is not None
        or (active and not schedule.enabled)
        or (active and schedule.next_run_at is None)
    )
    if not active:
        values["next_run_at"] = None
    elif retime:
        values["next_run_at"] = next_tick(new_cron, new_zone, now or utcnow())
    else:
        # Validates the combination even when only other fields change.
        next_tick(new_cron, new_zone, now or utcnow())
    result = uow.repo(JobSchedule).update_entity(
        schedule, values, expected_version=expected_version, on_conflict="reject"
    )
    return result.entity


def remove(uow: UnitOfWork, schedule: JobSchedule) -> None:
    """Delete a schedule and its run history (audited with the old values)."""
    uow.repo(JobSchedule).delete_entity(schedule, soft=False)


def lock(uow: UnitOfWork, schedule_id: uuid.UUID) -> JobSchedule | None:
    return uow.session.execute(
        select(JobSchedule).where(JobSchedule.id == schedule_id).with_for_update()
    ).scalar_one_or_none()


def find(uow: UnitOfWork, ref: str) -> JobSchedule:
    """A schedule by id or name (CLI), locked.

    Raises:
        NotFoundError: no such schedule.
    """
    try:
        row = lock(uow, uuid.UUID(ref))
    except ValueError:
        row = None
    if row is None:
        row = uow.session.execute(
            select(JobSchedule).where(JobSchedule.name == ref).with_for_update()
        ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"schedule {ref!r} not found", details={"id": ref})
    return row


# --------------------------------------------------------------------------- ticks


@dataclass(frozen=True)
class TickRun:
    """One tick this scheduler handled."""

    schedule_id: uuid.UUID
    tick: datetime
    job_id: uuid.UUID | None
    missed: int
    error: str | None


@dataclass(frozen=True)
class _Due:
    id: uuid.UUID
    next_run_at: datetime
    version: int
    cron: str
    timezone: str


def run_due(
    db: DB, send: Sender | None, *, now: datetime | None = None, batch: int = BATCH
) -> list[TickRun]:
    """Start the job of every schedule whose tick has come (see the module docstring).

    Safe to call from any number of processes at once: each tick runs once.

    Args:
        db: the database.
        send: sends a job's message after commit (None: the sweeper's next pass).
        now: the current time (tests).
        batch: at most this many schedules per call.

    Returns:
        The ticks this call handled (not those another scheduler took).
    """
    at = now or utcnow()
    with db.session() as session:
        due = [
            _Due(r.id, r.next_run_at, r.version, r.cron, r.timezone)
            for r in session.execute(
                select(
                    JobSchedule.id,
                    JobSchedule.next_run_at,
                    JobSchedule.version,
                    JobSchedule.cron,
                    JobSchedule.timezone,
                )
                .where(
                    JobSchedule.enabled.is_(True),
                    JobSchedule.next_run_at.is_not(None),
                    JobSchedule.next_run_at <= at,
                )
                .order_by(JobSchedule.next_run_at)
                .limit(batch)
            )
        ]
    done: list[TickRun] = []
    for item in due:
        run = run_tx(partial(_fire, item=item, send=send, now=at), db=db)
        if run is not None:
            done.append(run)
            log.info(
                "schedule_tick",
                schedule_id=str(run.schedule_id),
                tick=run.tick.isoformat(),
                job_id=str(run.job_id) if run.job_id else None,
                missed=run.missed,
                error=run.error,
            )
    return done


def _fire(
    uow: UnitOfWork, *, item: _Due, send: Sender | None, now: datetime
) -> TickRun | None:
    following: datetime | None = None
    error: str | None = None
    try:
        following = next_tick(item.cron, item.timezone, now)
    except AppValidationError as exc:  # cannot happen for a stored schedule; be safe
        error = exc.message
    missed = _ticks_between(item.cron, item.timezone, item.next_run_at, now)
    # The claim: the first statement of the transaction (SQLite: BEGIN IMMEDIATE, the
    # write lock is ours; PostgreSQL: a concurrent claim waits for our row lock, then
    # finds next_run_at changed and matches nothing).
    claimed = uow.session.execute(
        update(JobSchedule)
        .where(
            JobSchedule.id == item.id,
            JobSchedule.enabled.is_(True),
            JobSchedule.next_run_at == item.next_run_at,
            JobSchedule.version == item.version,
        )
        .values(
            next_run_at=following,
            last_run_at=now,
            version=JobSchedule.version + 1,
            updated_at=now,
        )
        .returning(
            JobSchedule.task,
            JobSchedule.kwargs,
            JobSchedule.timeout,
            JobSchedule.created_by,
            JobSchedule.project_id,
            JobSchedule.name,
        )
        .execution_options(synchronize_session=False)
    ).first()
    if claimed is None:
        return None  # another scheduler took it, or the schedule changed meanwhile
    job_id: uuid.UUID | None = None
    if error is None:
        try:
            with uow.session.begin_nested():
                job = enqueue(
                    uow,
                    JobCreate(
                        name=claimed.task,
                        kwargs=dict(claimed.kwargs),
                        timeout=claimed.timeout,
                        tags=["schedule", claimed.name[:50]],
                    ),
                    created_by=claimed.created_by,
                    send=send,
                    project_id=claimed.project_id,
                )
                job_id = job.id
        except AppError as exc:
            error = exc.message[:2000]
    uow.session.add(
        JobScheduleRun(
            schedule_id=item.id,
            tick=item.next_run_at,
            job_id=job_id,
            missed=missed,
            error=error,
            created_at=now,
        )
    )
    uow.session.execute(
        update(JobSchedule)
        .where(JobSchedule.id == item.id)
        .values(last_job_id=job_id, last_error=error)
        .execution_options(synchronize_session=False)
    )
    uow.flush()
    return TickRun(item.id, item.next_run_at, job_id, missed, error)


def prune_runs(db: DB, now: datetime | None = None) -> int:
    """Forget handled ticks older than RUN_RETENTION; returns how many."""
    cutoff = (now or utcnow()) - RUN_RETENTION

    def work(uow: UnitOfWork) -> int:
        result = uow.session.execute(
            delete(JobScheduleRun).where(JobScheduleRun.created_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    return run_tx(work, db=db)


def recent_runs(
    uow: UnitOfWork, schedule_id: uuid.UUID, limit: int = 20
) -> list[JobScheduleRun]:
    return list(
        uow.session.execute(
            select(JobScheduleRun)
            .where(JobScheduleRun.schedule_id == schedule_id)
            .order_by(JobScheduleRun.tick.desc())
            .limit(limit)
        ).scalars()
    )
