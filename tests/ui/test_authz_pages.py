"""The ui offers only what the api says the user may do (AppTest, real `ApiClient` over
an `httpx.MockTransport` fake of the api): a project's `can` list decides the edit,
share and import controls; sign-out-everywhere buttons call the api's endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

# Imported here, once, not inside the first script run (which has a time limit).
import ballast_ui.pages  # noqa: F401

ME = uuid.UUID("00000000-0000-0000-0000-0000000000cc")
OTHER = uuid.UUID("00000000-0000-0000-0000-0000000000dd")
VIEWER = ("projects:read", "datasets:read")
EDITOR = ("projects:read", "projects:write", "datasets:read", "datasets:write")
ADMIN = (*EDITOR, "users:read", "users:write", "projects:delete")


class FakeApi:
    """Projects (with `can`), saved forms (none), users and session endpoints."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def project(self, can: list[str] | None, **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        p: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": f"P{len(self.projects)}",
            "description": "",
            "status": "active",
            "priority": 3,
            "budget": 0.0,
            "start_date": None,
            "tags": [],
            "is_public": True,
            "owner_id": str(OTHER),
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "can": can,
        }
        p.update(fields)
        self.projects[p["id"]] = p
        return p

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        self.calls.append(f"{request.method} {path}")
        if request.method == "GET" and path == "/projects":
            items = list(self.projects.values())
            return httpx.Response(
                200,
                json={
                    "items": items,
                    "total": len(items),
                    "page": 1,
                    "size": 25,
                    "pages": 1,
                },
            )
        if request.method == "GET" and path.endswith("/members"):
            return httpx.Response(200, json=[])
        if request.method == "GET" and path.startswith("/projects/"):
            found = self.projects.get(path.split("/")[2])
            if found is not None:
                return httpx.Response(200, json=found)
        if request.method == "GET" and path == "/users":
            now = datetime.now(UTC).isoformat()
            users = [
                {
                    "id": str(uid),
                    "username": name,
                    "display_name": "",
                    "email": None,
                    "is_active": True,
                    "roles": [role],
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for uid, name, role in ((ME, "me", "admin"), (OTHER, "other", "editor"))
            ]
            return httpx.Response(
                200,
                json={"items": users, "total": 2, "page": 1, "size": 200, "pages": 1},
            )
        if request.method == "DELETE" and path in (
            "/sessions",
            "/sessions/current",
            f"/users/{OTHER}/sessions",
        ):
            return httpx.Response(204)
        if request.method == "GET" and path == "/datasets":
            return httpx.Response(
                200, json={"items": [], "total": 0, "page": 1, "size": 25, "pages": 1}
            )
        return httpx.Response(
            404,
            json={
                "code": "not_found",
                "message": path,
                "details": {},
                "trace_id": None,
            },
        )


FAKE = FakeApi()


def install(permissions: Sequence[str]) -> Any:
    """A logged-in session context talking to `FAKE` (inside AppTest scripts)."""
    from tests.ui.fakes import install_ctx

    return install_ctx(permissions, handler=FAKE, user_id=ME, roles=["x"])


def page_app() -> None:
    import streamlit as st

    from ballast_ui.pages import ALL_PAGES
    from ballast_ui.router import Router
    from tests.ui.test_authz_pages import install

    ctx = install(st.session_state["perms"])
    r = Router(ALL_PAGES, default="home")
    r.sync_from_url()
    if ctx.user is None:
        st.text("signed out")
        return
    page = r.pages[r.current_page]
    page.render(ctx, r)


@pytest.fixture(autouse=True)
def fake() -> FakeApi:
    FAKE.__init__()  # type: ignore[misc]
    return FAKE


def open_page(page: str, perms: Sequence[str], **params: str) -> AppTest:
    at = AppTest.from_function(page_app, default_timeout=60)
    at.session_state["perms"] = list(perms)
    at.query_params["page"] = page
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _controls(at: AppTest, project_id: str) -> dict[str, bool]:
    """Whether each edit control of the project form is enabled."""
    k = f"project.{project_id}"
    return {
        "save": not at.button(key=f"{k}::save").disabled,
        "apply_offered": not at.button(key=f"{k}::apply").disabled,
        "name": not at.text_input(key=f"{k}.name").disabled,
        "status": not at.selectbox(key=f"{k}.status").disabled,
        "priority": not at.slider(key=f"{k}.priority").disabled,
        "public": not at.checkbox(key=f"{k}.is_public").disabled,
        # The Sharing section's form is there only for who may share.
        "share": any(t.key == f"share::{project_id}::username" for t in at.text_input),
    }


def test_a_viewer_sees_no_edit_controls(fake: FakeApi) -> None:
    p = fake.project(["read"])
    at = open_page("projects", VIEWER, id=p["id"])
    assert not any(_controls(at, p["id"]).values())
    assert any("can see this project but not change it" in i.value for i in at.info)
    listing = open_page("projects", VIEWER)
    assert listing.button(key="projects::new").disabled


def test_an_editor_gets_what_the_project_allows(fake: FakeApi) -> None:
    public = fake.project(["read"])  # someone else's, public: read only
    member = fake.project(["read", "write"])  # shared with me as editor
    mine = fake.project(["read", "write", "share"], owner_id=str(ME), is_public=False)
    at = open_page("projects", EDITOR, id=public["id"])
    assert not any(_controls(at, public["id"]).values())
    at = open_page("projects", EDITOR, id=member["id"])
    c = _controls(at, member["id"])
    assert c["save"]
    assert c["name"]
    assert c["priority"]
    assert not c["public"]  # only the owner shares
    assert not c["share"]
    at = open_page("projects", EDITOR, id=mine["id"])
    assert all(
        v for name, v in _controls(at, mine["id"]).items() if name != "apply_offered"
    )
    # Without `can` (an api older than it) the role decides, as before.
    old = fake.project(None)
    at = open_page("projects", EDITOR, id=old["id"])
    assert _controls(at, old["id"])["save"]


def test_data_import_offers_only_projects_i_may_change(fake: FakeApi) -> None:
    fake.project(["read"], name="Theirs")
    writable = fake.project(["read", "write"], name="Ours")
    at = open_page("data", EDITOR)
    options = at.selectbox(key="data-import.project").options
    assert options == ["(no project)", "Ours"]
    assert writable["id"]


def test_sign_out_everywhere_self_and_admin(fake: FakeApi) -> None:
    at = open_page("settings", EDITOR)
    at.button(key="settings::logout_all").click().run()
    assert "DELETE /sessions" in fake.calls
    assert "DELETE /sessions/current" not in fake.calls
    assert at.text[0].value == "signed out"

    at = open_page("admin", ADMIN)
    assert at.button(key=f"admin::logout_all::{ME}").disabled  # mine: on Settings
    at.button(key=f"admin::logout_all::{OTHER}").click().run()
    assert f"DELETE /users/{OTHER}/sessions" in fake.calls
    assert any("Signed other out everywhere." in c.value for c in at.caption)
