"""`ballast_common.contracts`: pydantic only, and the little behaviour its models carry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from ballast_common import contracts
from ballast_common.contracts import (
    DraftWrite,
    JobStatus,
    JobView,
    Page,
    Preferences,
    SessionRead,
    UserRead,
)
from ballast_common.db import PageResult
from ballast_common.telemetry import events

# Third-party packages the contracts may load: pydantic and what it brings along
# (email-validator for `EmailStr`).
ALLOWED = {
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "typing_inspection",
    "annotated_types",
    "email_validator",
    "dns",
    "idna",
}


def _third_party_loaded_by(module: str) -> list[str]:
    script = textwrap.dedent(f"""
        import importlib, sys
        before = set(sys.modules)
        importlib.import_module({module!r})
        new = {{m.split(".")[0] for m in set(sys.modules) - before}}
        print(" ".join(sorted(
            m for m in new
            if m not in sys.stdlib_module_names and not m.startswith("_")
        )))
        """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.split()


def test_the_contracts_load_pydantic_and_nothing_of_the_server() -> None:
    loaded = set(_third_party_loaded_by("ballast_common.contracts"))
    assert "pydantic" in loaded
    assert loaded - ALLOWED - {"ballast_common"} == set()


def test_the_check_sees_a_server_dependency() -> None:
    loaded = set(_third_party_loaded_by("ballast_common.db"))
    assert "sqlalchemy" in loaded - ALLOWED


def test_every_public_name_is_exported() -> None:
    for name in contracts.__all__:
        assert getattr(contracts, name) is not None


def _user(**changes: Any) -> UserRead:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "username": "ed",
        "display_name": "Ed",
        "email": None,
        "roles": ["editor"],
        "permissions": ["projects:read"],
        "preferences": {},
    }
    return UserRead(**{**fields, **changes})


def test_a_user_can_what_the_api_granted() -> None:
    user = _user()
    assert user.can("projects:read")
    assert not user.can("projects:write")


def test_a_session_keeps_its_token_out_of_repr() -> None:
    now = datetime.now(UTC)
    session = SessionRead(
        token="secret-token",
        session_id=uuid.uuid4(),
        expires_at=now,
        idle_timeout_s=60,
        user=_user(),
    )
    assert "secret-token" not in repr(session)
    assert "secret-token" not in str(session)
    assert session.token == "secret-token"


def _job_row(**changes: Any) -> SimpleNamespace:
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "demo.sleep",
        "args": [],
        "kwargs": {"seconds": 1},
        "queue": "default",
        "priority": 5,
        "scheduled_at": None,
        "timeout": 60,
        "retry_count": 0,
        "max_retries": 3,
        "retry_delay": 1.0,
        "depends_on": [],
        "tags": [],
        "created_by": None,
        "status": "RUNNING",
        "progress": 0.5,
        "progress_message": "",
        "result_ref": None,
        "error_code": None,
        "error_message": None,
        "error_action": None,
        "trace_id": None,
        "attempts": 1,
        "cancel_requested_at": None,
        "started_at": now,
        "completed_at": None,
        "created_at": now,
        "updated_at": now,
    }
    return SimpleNamespace(**{**row, **changes})


def test_a_job_view_of_a_row() -> None:
    view = JobView.of(_job_row())
    assert view.status is JobStatus.RUNNING
    assert not view.cancel_requested
    assert view.params == {"seconds": 1} == view.kwargs
    assert not view.finished
    assert not view.retryable
    asked = JobView.of(_job_row(cancel_requested_at=datetime.now(UTC)))
    assert asked.cancel_requested


@pytest.mark.parametrize(
    ("status", "finished", "retryable"),
    [
        ("PENDING", False, False),
        ("RUNNING", False, False),
        ("COMPLETED", True, False),
        ("FAILED", True, True),
        ("CANCELLED", True, True),
    ],
)
def test_finished_and_retryable_jobs(
    status: str, finished: bool, retryable: bool
) -> None:
    view = JobView.of(_job_row(status=status))
    assert (view.finished, view.retryable) == (finished, retryable)


def test_a_job_view_refuses_fields_it_does_not_know() -> None:
    fields = {k: v for k, v in vars(_job_row()).items() if k != "cancel_requested_at"}
    with pytest.raises(ValidationError):
        JobView.model_validate({**fields, "result": None})


def test_a_page_of_a_repository_page() -> None:
    page = Page[str].of(PageResult([1, 2], total=5, page=2, size=2), str)
    assert page.model_dump() == {
        "items": ["1", "2"],
        "total": 5,
        "page": 2,
        "size": 2,
        "pages": 3,
    }


@dataclass
class _Paged:
    items: list[int] = field(default_factory=list)
    total: int = 0
    page: int = 1
    size: int = 10
    pages: int = 1


def test_a_page_of_anything_paged() -> None:
    assert Page[int].of(_Paged([7], 1), lambda x: x * 2).items == [14]


def test_preferences_need_a_known_time_zone() -> None:
    assert Preferences(timezone="Europe/Berlin").timezone == "Europe/Berlin"
    with pytest.raises(ValidationError, match="unknown time zone"):
        Preferences(timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        Preferences.model_validate({"theme": "dark", "font": "serif"})


def test_a_draft_value_has_a_size_bound() -> None:
    DraftWrite(form_id="f", field="a", value="x" * 1000)
    with pytest.raises(ValidationError, match="larger than"):
        DraftWrite(form_id="f", field="a", value="x" * (256 * 1024))
    with pytest.raises(ValidationError):
        DraftWrite(form_id="f f", field="a")


def test_track_and_the_api_share_the_event_name_rule() -> None:
    assert events.EVENT_NAME_PATTERN == contracts.events.EVENT_NAME_PATTERN
    assert events.MAX_EVENT_NAME_LENGTH == contracts.events.MAX_EVENT_NAME_LENGTH
    batch = contracts.EventBatch.model_validate({"events": [{"event": "form_saved"}]})
    assert batch.events[0].props == {}
    with pytest.raises(ValidationError):
        contracts.EventIn(event="Not An Event")


def test_a_patch_may_leave_a_field_out_but_not_null_it() -> None:
    assert contracts.ProjectUpdate(name="p").name == "p"
    assert contracts.ProjectUpdate(start_date=None).start_date is None  # clears
    with pytest.raises(ValidationError, match="not null"):
        contracts.ProjectUpdate(name=None)
    assert contracts.UserUpdate(email=None).email is None  # clears
    with pytest.raises(ValidationError, match="not null"):
        contracts.UserUpdate(roles=None)


def test_job_tags_are_bounded() -> None:
    assert contracts.JobCreate(name="demo.sleep", tags=["a"]).tags == ["a"]
    with pytest.raises(ValidationError, match="tags must be 1 to 50 characters"):
        contracts.JobCreate(name="demo.sleep", tags=[""])
