"""The project being edited is refreshed off the script thread (stale-while-revalidate)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from ballast_common.errors import NotFoundError
from ballast_ui.client import ApiUnavailable, Project
from ballast_ui.pages import projects
from ballast_ui.router import MAX_PAGE, page_number

PID = (
    "5b0e6a9c-2f4d-4c1e-9a7b-3d2f1e0c9b8a"  # fixed: test ids must match across workers
)


def _project(version: int) -> Project:
    now = datetime.now(UTC)
    return Project(
        id=uuid.UUID(PID),
        name="p",
        owner_id=None,
        version=version,
        created_at=now,
        updated_at=now,
    )


@dataclass
class Api:
    """``get_project`` answers from a script of outcomes; calls can be held back."""

    outcomes: list[Any]
    calls: int = 0
    gate: threading.Event = field(default_factory=threading.Event)

    def get_project(self, project_id: str) -> Project:
        assert project_id == PID
        self.gate.wait(5)
        self.calls += 1
        out = self.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


@dataclass
class Ctx:
    api: Api


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    fake: dict[str, Any] = {}
    monkeypatch.setattr(projects.st, "session_state", fake)
    return fake


def _settle(state: dict[str, Any]) -> None:
    pending = state[f"{projects._PROJECT}{PID}"][2]
    if pending is not None:
        pending.exception(timeout=5)


def test_runs_use_the_copy_and_take_the_refresh_later(
    state: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api([_project(1), _project(2)])
    api.gate.set()
    ctx: Any = Ctx(api)
    assert projects._fetch_project(ctx, PID).version == 1
    # Within the TTL: no api call at all.
    assert projects._fetch_project(ctx, PID).version == 1
    assert api.calls == 1
    monkeypatch.setattr(projects, "PROJECT_TTL_S", 0.0)
    api.gate.clear()
    # Due: this run starts the refresh and still answers with the copy at hand.
    assert projects._fetch_project(ctx, PID).version == 1
    assert projects._fetch_project(ctx, PID).version == 1  # refresh still running
    api.gate.set()
    _settle(state)
    assert projects._fetch_project(ctx, PID).version == 2
    assert api.calls == 2


def test_a_failed_refresh_keeps_the_copy_and_a_deleted_project_shows(
    state: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api([_project(1), ApiUnavailable("down"), NotFoundError("gone")])
    api.gate.set()
    ctx: Any = Ctx(api)
    projects._fetch_project(ctx, PID)
    monkeypatch.setattr(projects, "PROJECT_TTL_S", 0.0)
    projects._fetch_project(ctx, PID)
    _settle(state)
    assert projects._fetch_project(ctx, PID).version == 1  # api down: the copy
    projects._fetch_project(ctx, PID)
    _settle(state)
    with pytest.raises(NotFoundError):
        projects._fetch_project(ctx, PID)
    assert f"{projects._PROJECT}{PID}" not in state


@pytest.mark.parametrize(
    "bad_id", ["x", "0", " ", "\x00", "../../v1/users", "1" * 5000, PID + "0"]
)
def test_an_id_that_is_no_project_id_is_not_found_without_asking_the_api(
    state: dict[str, Any], bad_id: str
) -> None:
    api = Api([])
    with pytest.raises(NotFoundError):
        projects._fetch_project(Ctx(api), bad_id)  # type: ignore[arg-type]
    assert api.calls == 0
    assert state == {}


@pytest.mark.parametrize(
    ("raw", "page"),
    [
        (None, 1),
        ("", 1),
        ("3", 3),
        ("-4", 1),
        ("0", 1),
        ("abc", 1),
        ("2.5", 1),
        ("1e9", 1),
        ("\x00", 1),
        ("9" * 400, MAX_PAGE),
    ],
)
def test_the_list_page_number_from_the_address_is_always_a_page(
    raw: str | None, page: int
) -> None:
    assert page_number(raw) == page
