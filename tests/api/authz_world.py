"""A small world for authorization tests: one project per (caller, relation), each with a
dataset, a job (and its result) and a saved form, written straight to the database.

Relations of a caller to a project:

- ``owner``: the caller owns it;
- ``member-editor`` / ``member-viewer``: someone else's, shared with the caller;
- ``public``: someone else's, public, not shared with the caller;
- ``stranger``: someone else's, private, not shared with the caller.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from ballast_common.db import DB
from ballast_common.models import (
    Dataset,
    Form,
    Job,
    JobResult,
    JobSchedule,
    Project,
    ProjectMember,
    Role,
    User,
)

RELATIONS = ("owner", "member-editor", "member-viewer", "public", "stranger")
CALLERS = ("admin", "editor", "viewer")
# Not an argon2 hash: no password ever matches it (tests open sessions directly).
NO_LOGIN = "!"


@dataclass
class Cell:
    project: uuid.UUID
    dataset: uuid.UUID
    job: uuid.UUID
    schedule: uuid.UUID


@dataclass
class World:
    users: dict[str, uuid.UUID]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)


def make_user(db: DB, username: str, role: str) -> uuid.UUID:
    """A user with `role` (no usable password: tests open sessions directly)."""
    with db.session() as session, session.begin():
        existing = session.execute(
            select(User).where(User.username == username)
        ).scalar_one_or_none()
        if existing is not None:
            return existing.id
        role_row = session.execute(select(Role).where(Role.name == role)).scalar_one()
        user = User(
            username=username,
            display_name=username.title(),
            password_hash=NO_LOGIN,
            preferences={},
        )
        user.roles = [role_row]
        session.add(user)
        session.flush()
        return user.id


def user_ids(db: DB, *names: str) -> dict[str, uuid.UUID]:
    with db.session() as session:
        rows = session.execute(
            select(User.username, User.id).where(User.username.in_(names))
        )
        return {row.username: row.id for row in rows}


def build(db: DB, *, job_status: str = "PENDING") -> World:
    """One project per (caller, relation), owned by the caller or by ``other``."""
    other = make_user(db, "other", "editor")
    target = make_user(db, "target", "viewer")
    users = {**user_ids(db, *CALLERS), "other": other, "target": target}
    world = World(users=users)
    with db.session() as session, session.begin():
        for caller in CALLERS:
            for relation in RELATIONS:
                owner = users[caller] if relation == "owner" else other
                project = Project(
                    name=f"{caller} {relation}",
                    owner_id=owner,
                    is_public=relation == "public",
                )
                session.add(project)
                session.flush()
                if relation.startswith("member-"):
                    session.add(
                        ProjectMember(
                            project_id=project.id,
                            user_id=users[caller],
                            role=relation.removeprefix("member-"),
                        )
                    )
                # Everything hanging off the project is someone else's: what the caller
                # may do with it comes from the project alone.
                dataset = Dataset(
                    project_id=project.id,
                    name=f"data {caller} {relation}",
                    format="csv",
                    status="READY",
                    source_key=f"test/{project.id}.csv",
                    columns=[{"name": "x", "dtype": "float64"}],
                    created_by=other,
                )
                session.add(dataset)
                session.flush()
                job = Job(
                    name="analysis.bootstrap",
                    kwargs={"dataset_id": str(dataset.id), "columns": ["x"]},
                    created_by=other,
                    project_id=project.id,
                    status=job_status,
                )
                session.add(job)
                session.flush()
                if job_status == "COMPLETED":
                    session.add(JobResult(job_id=job.id, data={"x": 1}))
                session.add(Form(form_id=f"project.{project.id}", data={"a": 1}))
                schedule = JobSchedule(
                    name=f"nightly {uuid.uuid4().hex}",
                    task="analysis.bootstrap",
                    kwargs={"dataset_id": str(dataset.id), "columns": ["x"]},
                    cron="0 3 * * *",
                    project_id=project.id,
                    created_by=other,
                )
                session.add(schedule)
                session.flush()
                world.cells[(caller, relation)] = Cell(
                    project.id, dataset.id, job.id, schedule.id
                )
    return world
