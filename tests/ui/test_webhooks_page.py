"""The Webhooks page (AppTest) against a real api process: subscribe (the secret shown
once), bad input answered on the page, the delivery log, redelivery, delete; hidden
from users without `webhooks:admin`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from ballast_common.db import DB
from ballast_common.models import WebhookDelivery
from ballast_testing.api import api_process
from tests.api.conftest import _seeded

pytestmark = pytest.mark.integration

API: dict[str, str] = {}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DB]]:
    tmp: Path = tmp_path_factory.mktemp("webhooks-page")
    url = f"sqlite:///{tmp}/api.db"
    db = _seeded(DB(url))
    env = {"BALLAST_PATHS__DATA_DIR": str(tmp / "data")}
    with api_process(url, env=env, log_path=tmp / "api.log") as base:
        API["base"] = base
        yield base, db
    db.dispose()


def page_app() -> None:
    import streamlit as st

    from ballast_ui.client import ApiClient, make_http
    from ballast_ui.outbox import Outbox
    from ballast_ui.state import CTX, Ctx
    from tests.ui.fakes import _send, render_current_page, tracked_http
    from tests.ui.test_webhooks_page import API

    ctx = st.session_state.get(CTX)
    if ctx is None:
        who = st.session_state["who"]
        with make_http(API["base"]) as http:
            session = ApiClient(http, None, backoff_s=0).login(who, f"{who}-demo-pass")
        http = tracked_http(API["base"])
        api = ApiClient(http, session.token, backoff_s=0)
        ctx = Ctx(api=api, outbox=Outbox(_send, debounce_s=0))
        ctx.user = session.user
        ctx.drafts_loaded = True
        st.session_state[CTX] = ctx
    render_current_page(ctx)


def open_page(who: str = "admin") -> AppTest:
    at = AppTest.from_function(page_app, default_timeout=60)
    at.session_state["who"] = who
    at.query_params["page"] = "webhooks"
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts: list[Any] = [*at.markdown, *at.caption, *at.success, *at.error]
    return "\n".join(str(p.value) for p in parts)


def subscribe(at: AppTest, url: str, events: list[str]) -> None:
    at.text_input(key="webhooks::new::url").set_value(url)
    at.multiselect(key="webhooks::new::events").set_value(events)
    (submit,) = [b for b in at.button if b.label == "Subscribe"]
    submit.click().run()
    assert not at.exception, at.exception


def test_an_admin_subscribes_sees_the_secret_once_and_the_log(
    api: tuple[str, DB],
) -> None:
    base, db = api
    at = open_page()
    assert "webhooks" in at.text[0].value
    assert "No endpoint is subscribed." in texts(at)

    # Bad input is answered on the page, nothing is created.
    subscribe(at, "ftp://127.0.0.1/x", ["project.updated"])
    assert "Not subscribed:" in texts(at)
    subscribe(at, "http://127.0.0.1:9/hook", [])
    assert "Not subscribed:" in texts(at)
    assert "No endpoint is subscribed." in texts(at)

    subscribe(at, "http://127.0.0.1:9/hook", ["project.updated"])
    (secret,) = [c.value for c in at.code]
    assert secret.startswith("whsec_")
    assert "Subscribed http://127.0.0.1:9/hook" in texts(at)
    assert "**http://127.0.0.1:9/hook**" in texts(at)
    # Shown once: after it was acknowledged, no page shows it again.
    (done,) = [b for b in at.button if b.label == "I have stored the secret"]
    done.click().run()
    assert not at.code
    assert secret not in texts(at)

    # A project change is an event: it appears in the log, pending (no worker here).
    with httpx.Client(base_url=base, timeout=30) as http:
        login = http.post(
            "/v1/sessions", json={"username": "admin", "password": "admin-demo-pass"}
        )
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        pid = http.post("/v1/projects", json={"name": "hooked"}).json()["id"]
        assert http.patch(f"/v1/projects/{pid}", json={"name": "hooked 2"}).is_success
    at.run()
    (log,) = at.dataframe
    rows = log.value
    assert "project.updated" in set(rows["event"])
    assert set(rows["status"]) == {"PENDING"}
    assert not [
        b for b in at.button if b.label == "Redeliver"
    ]  # pending: nothing to redo

    # A failed delivery can be sent again from the page.
    with db.engine.begin() as conn:
        conn.execute(update(WebhookDelivery).values(status="FAILED", last_error="boom"))
    at.run()
    (again,) = [b for b in at.button if b.label == "Redeliver"]
    again.click().run()
    assert not at.exception, at.exception
    assert "queued again (project.updated)" in texts(at)
    assert set(at.dataframe[0].value["status"]) == {"PENDING"}

    # Delete.
    (delete,) = [b for b in at.button if b.label == "Delete"]
    delete.click().run()
    assert "Deleted the subscription of http://127.0.0.1:9/hook." in texts(at)
    assert "No endpoint is subscribed." in texts(at)


@pytest.mark.usefixtures("api")
def test_the_page_is_not_offered_without_the_permission() -> None:
    at = open_page("editor")
    assert "webhooks" not in at.text[0].value.split("=", 1)[1].split(",")
    assert "denied" in [t.value for t in at.text]
