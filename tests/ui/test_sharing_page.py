"""The project page's Sharing section (AppTest) against a real api process: the owner
shares with a user by username and stops sharing; an unknown name is said on the page
and changes nothing; a member who may only read sees the members, not the form."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

# Imported here, once, not inside the first script run (which has a time limit).
import ballast_ui.pages  # noqa: F401
from ballast_common.db import DB
from ballast_testing.api import api_process
from tests.api.conftest import _seeded

pytestmark = pytest.mark.integration

API: dict[str, str] = {}
PASSWORDS = {"editor": "editor-demo-pass", "viewer": "viewer-demo-pass"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("sharing-page")
    url = f"sqlite:///{tmp}/api.db"
    db = _seeded(DB(url))
    with api_process(
        url,
        env={"BALLAST_PATHS__DATA_DIR": str(tmp / "data")},
        log_path=tmp / "api.log",
    ) as base:
        API["base"] = base
        yield base
    db.dispose()


def token(user: str) -> str:
    resp = httpx.post(
        API["base"] + "/v1/sessions",
        json={"username": user, "password": PASSWORDS[user]},
        timeout=30,
    )
    resp.raise_for_status()
    return str(resp.json()["token"])


def page_app() -> None:
    import streamlit as st

    from ballast_ui.client import ApiClient
    from ballast_ui.outbox import Outbox
    from ballast_ui.state import CTX, Ctx
    from tests.ui.fakes import _send, render_current_page, tracked_http
    from tests.ui.test_sharing_page import API

    ctx = st.session_state.get(CTX)
    if ctx is None:
        api = ApiClient(
            tracked_http(API["base"]), st.session_state["token"], backoff_s=0
        )
        ctx = Ctx(api=api, outbox=Outbox(_send, debounce_s=0))
        ctx.user = api.me()
        ctx.drafts_loaded = True
        st.session_state[CTX] = ctx
    render_current_page(ctx)


def open_project(user: str, project_id: str) -> AppTest:
    at = AppTest.from_function(page_app, default_timeout=60)
    at.session_state["token"] = token(user)
    at.query_params["page"] = "projects"
    at.query_params["id"] = project_id
    at.run()
    assert not at.exception, at.exception
    return at


def members(at: AppTest) -> list[str]:
    return [
        m.value
        for m in at.markdown
        if m.value.startswith("**") and "`" in m.value and "demo" not in m.value
    ]


def text_of(at: AppTest) -> str:
    parts = [*at.info, *at.error, *at.caption]
    return "\n".join(str(p.value) for p in parts)


@pytest.mark.usefixtures("api")
def test_the_owner_shares_by_username_and_stops_sharing() -> None:
    headers = {"Authorization": f"Bearer {token('editor')}"}
    created = httpx.post(
        API["base"] + "/v1/projects",
        json={"name": f"Shared {uuid.uuid4().hex[:6]}"},
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    at = open_project("editor", pid)
    assert "Shared with nobody" in text_of(at)
    # An unknown name: said on the page, nothing shared.
    at.text_input(key=f"share::{pid}::username").set_value("nobody-here")
    at.button(key=f"FormSubmitter:share::{pid}::form-Share").click().run()
    assert "no active user named 'nobody-here'" in text_of(at)
    assert "Shared with nobody" in text_of(at)
    # The viewer, as an editor of this project.
    at.text_input(key=f"share::{pid}::username").set_value("viewer")
    at.selectbox(key=f"share::{pid}::role").set_value("editor")
    at.button(key=f"FormSubmitter:share::{pid}::form-Share").click().run()
    assert not at.exception, at.exception
    assert "Shared with viewer (editor)." in text_of(at)
    assert at.text_input(key=f"share::{pid}::username").value == ""
    listed = httpx.get(
        f"{API['base']}/v1/projects/{pid}/members", headers=headers, timeout=30
    ).json()
    assert [(m["username"], m["role"]) for m in listed] == [("viewer", "editor")]
    assert any("`viewer`" in m for m in members(at))
    # The member sees who it is shared with, and may not share it further.
    seen = open_project("viewer", pid)
    assert any("`viewer`" in m for m in members(seen))
    assert not [t for t in seen.text_input if t.key == f"share::{pid}::username"]
    viewer_id = listed[0]["user_id"]
    assert seen.button(key=f"share::{pid}::remove::{viewer_id}").disabled
    # The owner stops sharing.
    at.button(key=f"share::{pid}::remove::{viewer_id}").click().run()
    assert "No longer shared with viewer." in text_of(at)
    assert "Shared with nobody" in text_of(at)
    gone = httpx.get(
        f"{API['base']}/v1/projects/{pid}",
        headers={"Authorization": f"Bearer {token('viewer')}"},
        timeout=30,
    )
    assert gone.status_code == 404
