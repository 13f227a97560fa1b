"""Canaries: personal data and secrets sent through every endpoint and error path never
show up raw in a log line of the api, nor of the ui or worker logging setup.

The api runs with SQL echo on (a debugging setting an operator may well turn on), so
every statement it sends is logged too: its parameters must not be. Two extra routes
fail the way a bug would, one on the api's own engine and one on an engine that was
built elsewhere (and so without hidden parameters), to cover the unhandled-error path.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import structlog
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, StatementError

from ballast_api.main import create_app
from ballast_common.db import DB, run_tx
from ballast_common.seed import seed_demo
from ballast_common.telemetry import (
    bind_request_context,
    configure_logging,
    get_logger,
    log_error,
    track,
)
from tests.api.conftest import Api, _reset, make_config, open_session

EMAIL = "canary.alice@example.com"
PHONE = "+49 30 9876543"
CARD_SPACED = "4111 1111 1111 1111"
CARD_DASHED = "4111-1111-1111-1111"
CARD_PLAIN = "4111111111111111"
CARD_MC = "5555-5555-5555-4444"
IBAN = "DE89 3704 0044 0532 0130 00"
IBAN_COMPACT = "DE89370400440532013000"
# A password-like secret (an API key pasted into the wrong field).
TOKEN = "sk_live_Tr0ub4dor3CanaryX9yZ"
# A password: only ever sent where a password belongs.
PASSWORD = "hunter2-Canary!"

CANARIES = [
    EMAIL,
    PHONE,
    CARD_SPACED,
    CARD_DASHED,
    CARD_PLAIN,
    CARD_MC,
    IBAN,
    IBAN_COMPACT,
    TOKEN,
]
# A header value must be latin-1 and free of spaces to be sent as is.
HEADER_CANARIES = [EMAIL, CARD_DASHED, CARD_PLAIN, CARD_MC, IBAN_COMPACT, TOKEN]
PROSE = (
    f"mail {EMAIL} or call {PHONE}; card {CARD_SPACED} / {CARD_DASHED} / "
    f"{CARD_PLAIN} / {CARD_MC}; iban {IBAN} ({IBAN_COMPACT}); key {TOKEN}"
)


def _needles() -> list[str]:
    """Every raw form a canary could take in a line: as sent, URL-encoded, compacted."""
    core = [
        "canary.alice",
        "9876543",
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555-5555-5555-4444",
        "5555555555554444",
        "3704 0044 0532 0130",
        "370400440532013000",
        "Tr0ub4dor3CanaryX9yZ",
        "hunter2-Canary",
    ]
    encoded = {
        form
        for value in [*CANARIES, PASSWORD]
        for form in (quote(value, safe=""), quote_plus(value), json.dumps(value))
    }
    return sorted(set(core) | {e for e in encoded if "Canary" in e or "%" in e})


NEEDLES = _needles()


def leaks(text: str) -> list[tuple[str, str]]:
    return [
        (needle, line)
        for line in text.splitlines()
        for needle in NEEDLES
        if needle in line
    ]


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure_logging("api", level="DEBUG", fmt="json", stream=buf)
    yield buf
    configure_logging("api", level="WARNING", fmt="console")
    logging.getLogger().handlers.clear()


def _failing_routes(app: FastAPI) -> None:
    def own_engine(request: Request) -> None:
        """A statement the database refuses, on the api's own engine."""
        db: DB = request.app.state.db
        with db.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO users (id, username) VALUES (:id, :username)"),
                {"id": str(uuid.uuid4()), "username": PASSWORD},
            )

    def foreign_engine() -> None:
        """A statement failing on an engine built without hidden parameters."""
        engine = create_engine("sqlite://")
        try:
            with engine.connect() as conn:
                conn.execute(
                    text("SELECT * FROM no_such_table WHERE secret = :p"),
                    {"p": PASSWORD},
                )
        finally:
            engine.dispose()

    app.add_api_route("/v1/canary/own-engine", own_engine, methods=["POST"])
    app.add_api_route("/v1/canary/foreign-engine", foreign_engine, methods=["POST"])


@pytest.fixture
def canary_api(
    backend: str,
    seeded_dbs: dict[str, str],
    tmp_path: Path,
    log_buffer: io.StringIO,
) -> Iterator[Api]:
    db = DB(seeded_dbs[backend], echo=True)
    _reset(db)
    run_tx(seed_demo, db=db)
    config = make_config(tmp_path)
    app = create_app(config=config, db=db)
    _failing_routes(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        # The buffer is in place before start-up: every line of the app is scanned.
        assert "api_started" in log_buffer.getvalue()
        tokens = {u: open_session(db, config, u) for u in ("admin", "editor", "viewer")}
        yield Api(client, db, config, tokens)
        client.portal.call(db.adispose)
    db.dispose()


def _drive_every_endpoint(api: Api) -> dict[str, int]:
    """Send the canaries everywhere; return the status of each step for sanity checks."""
    c = api.client
    ed = api.h("editor")
    adm = api.h("admin")
    seen: dict[str, int] = {}

    def note(name: str, resp: Any) -> Any:
        seen[name] = resp.status_code
        return resp

    # Logins: wrong passwords, canaries as user names, malformed bodies.
    note("login_wrong", api.login("editor", PASSWORD))
    for i, value in enumerate(CANARIES):
        note(
            f"login_user_{i}",
            c.post("/v1/sessions", json={"username": value, "password": PASSWORD}),
        )
    note("login_missing", c.post("/v1/sessions", json={"username": EMAIL}))
    note(
        "login_not_json",
        c.post(
            "/v1/sessions",
            content=f'{{"username": "{EMAIL}", "password": "{PASSWORD}"'.encode(),
            headers={"Content-Type": "application/json"},
        ),
    )
    note(
        "login_form",
        c.post("/v1/sessions", data={"username": EMAIL, "password": PASSWORD}),
    )
    # Credentials where they do not belong: bad tokens, cookies, basic auth.
    note("me_bad_token", c.get("/v1/sessions/me", headers={"Authorization": TOKEN}))
    note(
        "me_bearer",
        c.get("/v1/sessions/me", headers={"Authorization": f"Bearer {TOKEN}"}),
    )
    note(
        "me_cookie",
        c.get("/v1/sessions/me", headers={"Cookie": f"ballast_session={TOKEN}"}),
    )
    note("me_basic", c.get("/v1/sessions/me", auth=(EMAIL, PASSWORD)))

    # Every header a client controls, on an ordinary request.
    for i, value in enumerate(HEADER_CANARIES):
        note(
            f"corr_{i}",
            c.get(
                "/v1/projects",
                headers={
                    **ed,
                    "X-Correlation-ID": value,
                    "User-Agent": f"agent {value}",
                    "X-Forwarded-For": value,
                    "traceparent": value,
                    "Referer": f"https://example.com/?q={value}",
                },
            ),
        )

    # Projects: bodies, updates, queries, paths, deletes.
    created = note(
        "project_create",
        c.post(
            "/v1/projects",
            json={
                "name": f"Canary {CARD_SPACED}",
                "description": PROSE,
                "tags": CANARIES,
            },
            headers={**ed, "Idempotency-Key": TOKEN},
        ),
    )
    project_id = created.json().get("id", str(uuid.uuid4()))
    note(
        "project_patch",
        c.patch(
            f"/v1/projects/{project_id}",
            json={"description": f"{PROSE} v2", "name": IBAN},
            headers=ed,
        ),
    )
    note(
        "project_patch_invalid",
        c.patch(
            f"/v1/projects/{project_id}",
            json={"priority": EMAIL, "budget": CARD_PLAIN, "start_date": IBAN},
            headers=ed,
        ),
    )
    note(
        "project_create_invalid",
        c.post(
            "/v1/projects",
            json={"name": "", "status": CARD_DASHED, "priority": TOKEN},
            headers=ed,
        ),
    )
    for i, value in enumerate(CANARIES):
        note(f"project_q_{i}", c.get("/v1/projects", params={"q": value}, headers=ed))
        note(
            f"project_filters_{i}",
            c.get(
                "/v1/projects",
                params={"status": value, "owner_id": value, "order_by": value},
                headers=ed,
            ),
        )
        note(f"project_path_{i}", c.get(f"/v1/projects/{quote(value)}", headers=ed))
        note(
            f"project_delete_{i}",
            c.delete(
                f"/v1/projects/{project_id}",
                params={"expected_version": value},
                headers=ed,
            ),
        )
    note("project_404", c.get(f"/v1/projects/{uuid.uuid4()}", headers=ed))
    note("project_read", c.get(f"/v1/projects/{project_id}", headers=ed))

    # Drafts and forms.
    items = [
        {"form_id": "canary", "field": f"f{i}", "value": value, "seq": 1}
        for i, value in enumerate(CANARIES)
    ]
    items.append({"form_id": "canary", "field": "nested", "value": {"note": PROSE}})
    note(
        "drafts_put",
        c.put(
            "/v1/drafts",
            json={"items": items},
            headers={**ed, "Idempotency-Key": EMAIL},
        ),
    )
    note(
        "drafts_invalid",
        c.put(
            "/v1/drafts",
            json={"items": [{"form_id": CARD_SPACED, "field": IBAN, "value": 1}]},
            headers=ed,
        ),
    )
    note("drafts_get", c.get("/v1/drafts", params={"form_id": CARD_DASHED}, headers=ed))
    note(
        "drafts_delete",
        c.delete(
            "/v1/drafts", params={"form_id": "canary", "field": TOKEN}, headers=ed
        ),
    )
    note(
        "form_save",
        c.put(
            "/v1/forms/canary-form",
            json={"data": {"note": PROSE, "card": CARD_PLAIN, "email": EMAIL}},
            headers=ed,
        ),
    )
    note(
        "form_stale",
        c.put(
            "/v1/forms/canary-form",
            json={"data": {"iban": IBAN}, "expected_version": 0},
            headers=ed,
        ),
    )
    note(
        "form_bad_id", c.put(f"/v1/forms/{quote(IBAN)}", json={"data": {}}, headers=ed)
    )
    note("form_get_404", c.get(f"/v1/forms/{CARD_DASHED}", headers=ed))

    # Tracked events: properties, nested and under suspicious keys.
    note(
        "events",
        c.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "event": "canary.viewed",
                        "props": {
                            "note": PROSE,
                            "card": CARD_PLAIN,
                            "iban": IBAN_COMPACT,
                            "path": f"/pay?card={quote(CARD_SPACED)}",
                            "nested": {"values": CANARIES},
                            "password": PASSWORD,
                        },
                        "session_id": CARD_DASHED,
                    }
                ]
            },
            headers=api.h("viewer"),
        ),
    )
    note(
        "events_invalid",
        c.post(
            "/v1/events",
            json={"events": [{"event": EMAIL, "props": {"x": PHONE}}]},
            headers=api.h("viewer"),
        ),
    )

    # Jobs.
    note(
        "job_create",
        c.post(
            "/v1/jobs",
            json={
                "name": "demo.sleep",
                "kwargs": {"seconds": 0.1},
                "tags": [CARD_DASHED, EMAIL],
            },
            headers={**ed, "Idempotency-Key": CARD_PLAIN},
        ),
    )
    note(
        "job_unknown",
        c.post("/v1/jobs", json={"name": TOKEN, "kwargs": {"note": PROSE}}, headers=ed),
    )
    note(
        "job_list",
        c.get("/v1/jobs", params={"name": EMAIL, "tag": CARD_PLAIN}, headers=ed),
    )
    note("job_path", c.get(f"/v1/jobs/{quote(CARD_SPACED)}", headers=ed))
    note("job_cancel_404", c.post(f"/v1/jobs/{uuid.uuid4()}/cancel", headers=ed))

    # Datasets: query, file name header, file content.
    csv = f"name,card,iban\n{EMAIL},{CARD_PLAIN},{IBAN}\n".encode()
    note(
        "dataset_upload",
        c.post(
            "/v1/datasets",
            params={"name": f"canary {CARD_SPACED}"},
            content=csv,
            headers={**ed, "X-Filename": f"{CARD_DASHED}.csv"},
        ),
    )
    note(
        "dataset_bad_format",
        c.post(
            "/v1/datasets",
            params={"name": EMAIL, "format": IBAN},
            content=csv,
            headers={**ed, "X-Filename": f"{TOKEN}.exe"},
        ),
    )
    note("dataset_path", c.get(f"/v1/datasets/{quote(IBAN)}", headers=ed))

    # Users (admin), preferences, audit queries.
    note(
        "user_create",
        c.post(
            "/v1/users",
            json={
                "username": "canary_user",
                "password": PASSWORD,
                "display_name": PROSE[:128],
                "email": EMAIL,
            },
            headers=adm,
        ),
    )
    note(
        "user_duplicate",
        c.post(
            "/v1/users",
            json={"username": "canary_user", "password": PASSWORD, "email": EMAIL},
            headers=adm,
        ),
    )
    note(
        "user_invalid",
        c.post(
            "/v1/users",
            json={"username": CARD_SPACED, "password": "short", "email": IBAN},
            headers=adm,
        ),
    )
    note("users_q", c.get("/v1/users", params={"q": EMAIL}, headers=adm))
    note(
        "user_patch_404",
        c.patch(f"/v1/users/{uuid.uuid4()}", json={"email": EMAIL}, headers=adm),
    )
    note(
        "prefs_invalid",
        c.put(
            "/v1/users/me/preferences",
            json={"theme": CARD_PLAIN, "timezone": IBAN},
            headers=ed,
        ),
    )
    note(
        "audit",
        c.get(
            "/v1/audit",
            params={"resource_id": CARD_PLAIN, "correlation_id": EMAIL, "since": IBAN},
            headers=adm,
        ),
    )
    note("audit_forbidden", c.get("/v1/audit", params={"q": TOKEN}, headers=ed))

    # Unknown routes and methods, with canaries in path and query.
    for i, value in enumerate(CANARIES):
        note(f"unknown_{i}", c.get(f"/{quote(value)}", params={"email": EMAIL}))
    note("wrong_method", c.put(f"/v1/sessions/me?card={quote(CARD_SPACED)}"))

    # Unhandled errors: 500 with a trace id, logged with log_error.
    note("boom_own", c.post("/v1/canary/own-engine", headers=ed))
    note("boom_foreign", c.post("/v1/canary/foreign-engine", headers=ed))
    return seen


def test_no_canary_reaches_an_api_log_line(
    canary_api: Api, log_buffer: io.StringIO
) -> None:
    seen = _drive_every_endpoint(canary_api)
    # The paths were taken: writes succeeded, errors were errors.
    expected = {
        "project_create": 201,
        "drafts_put": 200,
        "form_save": 201,
        "events": 202,
        "job_create": 201,
        "dataset_upload": 202,
        "user_create": 201,
        "login_wrong": 401,
        "me_bearer": 401,
        "project_create_invalid": 422,
        "project_404": 404,
        "unknown_0": 404,
        "boom_own": 500,
        "boom_foreign": 500,
    }
    assert {k: seen[k] for k in expected} == expected

    output = log_buffer.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    # The scan covered what it claims: access lines, SQL echo, tracked events, errors.
    assert events.count("request") >= len(seen)
    assert any("INSERT INTO projects" in e for e in events)
    assert "track" in events
    assert events.count("error") >= 2
    assert leaks(output) == []


def test_correlation_id_carrying_personal_data_is_replaced(canary_api: Api) -> None:
    for value in HEADER_CANARIES:
        resp = canary_api.client.get("/healthz", headers={"X-Correlation-ID": value})
        echoed = resp.headers["X-Correlation-ID"]
        assert echoed != value
        uuid.UUID(echoed)  # a fresh one, as for a request that sent none
    ordinary = canary_api.client.get(
        "/healthz", headers={"X-Correlation-ID": "ui-7f3a-42"}
    )
    assert ordinary.headers["X-Correlation-ID"] == "ui-7f3a-42"


def test_access_log_masks_path_and_query(
    canary_api: Api, log_buffer: io.StringIO
) -> None:
    canary_api.client.get(
        f"/v1/projects/{quote(CARD_SPACED)}",
        params={"q": CARD_DASHED, "email": EMAIL, "page": 2},
        headers=canary_api.h("editor"),
    )
    lines = [json.loads(line) for line in log_buffer.getvalue().splitlines()]
    (access,) = [line for line in lines if line["event"] == "request"]
    assert access["route"] == "/v1/projects/{project_id}"
    assert access["path"] == "/v1/projects/***1111"
    assert "page=2" in access["query"]
    assert "***1111" in access["query"]
    assert "%40example.com" in access["query"] or "@example.com" in access["query"]
    assert leaks(json.dumps(access)) == []


def test_audit_api_shows_user_text_as_written(api: Api) -> None:
    description = f"edit01-by-tab1 / call {PHONE} / {EMAIL}"
    created = api.client.post(
        "/v1/projects",
        json={"name": "edit01-by-tab1", "description": description},
        headers=api.h("editor"),
    ).json()
    api.client.patch(
        f"/v1/projects/{created['id']}",
        json={"description": "edit02-by-tab2"},
        headers=api.h("editor"),
    )
    user = api.client.post(
        "/v1/users",
        json={"username": "audited_user", "password": PASSWORD, "email": EMAIL},
        headers=api.h("admin"),
    ).json()
    body = api.client.get(
        "/v1/audit",
        params={"resource_type": "projects", "resource_id": created["id"]},
        headers=api.h("admin"),
    ).json()
    update, create = body["items"]  # newest first
    assert create["new_values"]["name"] == "edit01-by-tab1"
    assert create["new_values"]["description"] == description
    assert update["old_values"]["description"] == description
    assert update["new_values"]["description"] == "edit02-by-tab2"

    users = api.client.get(
        "/v1/audit",
        params={"resource_type": "users", "resource_id": user["id"]},
        headers=api.h("admin"),
    ).json()["items"]
    created_user = next(i for i in users if i["action"] == "create")
    assert created_user["new_values"]["email"] == EMAIL
    assert created_user["new_values"]["username"] == "audited_user"
    # Secrets never leave the api: the password hash is redacted, the password absent.
    raw = json.dumps(users)
    assert "argon2" not in raw
    assert PASSWORD not in raw
    assert created_user["new_values"].get("password_hash") in (None, "***")


# --- the same logging setup in the ui and worker processes ---------------------------


@pytest.mark.parametrize("service", ["ui", "jobs"])
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_canary_in_ui_or_worker_log_lines(service: str, fmt: str) -> None:
    buf = io.StringIO()
    configure_logging(service, level="DEBUG", fmt=fmt, stream=buf)  # type: ignore[arg-type]
    try:
        log = get_logger(f"ballast_{service}.canary")
        query = "&".join(f"v{i}={quote_plus(v)}" for i, v in enumerate(CANARIES))
        query += f"&password={quote_plus(PASSWORD)}"
        path = f"/project/{quote(CARD_SPACED)}/{quote(EMAIL)}?{query}"
        with bind_request_context(correlation_id=CARD_DASHED):
            # Server access lines (uvicorn, tornado) and client lines (httpx).
            logging.getLogger("uvicorn.access").info(
                '%s - "%s %s HTTP/%s" %d', "10.0.0.7:5123", "GET", path, "1.1", 200
            )
            logging.getLogger("tornado.access").info(
                "%d %s %.2fms", 200, f"GET {path} (10.0.0.7)", 1.5
            )
            logging.getLogger("httpx").info(
                'HTTP Request: %s %s "%s %d %s"',
                "PUT",
                f"http://api:8000/v1/drafts?{query}",
                "HTTP/1.1",
                200,
                "OK",
            )
            # Structured lines, tracked events, handled errors.
            log.info("job_started", kwargs={"note": PROSE, "values": CANARIES})
            log.warning("heartbeat_failed", error=f"lost {PROSE}")
            track("canary.saved", {"note": PROSE, "card": CARD_PLAIN, "iban": IBAN})
            try:
                raise IntegrityError(
                    "INSERT INTO users (username) VALUES (?)",
                    (PASSWORD,),
                    ValueError(
                        f"duplicate key\nDETAIL:  Key (username)=({PASSWORD}) "
                        "already exists."
                    ),
                )
            except StatementError as exc:
                log_error(exc, {"note": PROSE})
                log.exception("task_failed")
                logging.getLogger("celery.app.trace").error(
                    "Task %s raised: %r", "demo.fail", exc, exc_info=True
                )
            structlog.get_logger("raw").info(PROSE)
    finally:
        configure_logging("api", level="WARNING", fmt="console")
        logging.getLogger().handlers.clear()
    output = buf.getvalue()
    assert "task_failed" in output
    assert "canary.saved" in output
    assert "[SQL: INSERT INTO users" in output  # the statement, not its parameters
    assert leaks(output) == []


# --- SQL parameters: hidden by the engines and by log_error --------------------------


def test_engines_hide_parameters(tmp_path: Path) -> None:
    db = DB(f"sqlite:///{tmp_path}/hide.db")
    try:
        assert db.engine.hide_parameters is True
        assert db.async_engine.sync_engine.hide_parameters is True
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (a TEXT UNIQUE)"))
            conn.execute(text("INSERT INTO t VALUES (:a)"), {"a": PASSWORD})
        with pytest.raises(IntegrityError) as caught, db.engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:a)"), {"a": PASSWORD})
        assert PASSWORD not in str(caught.value)
        assert "INSERT INTO t" in str(caught.value)
    finally:
        db.dispose()


def test_log_error_drops_parameters_of_any_engine() -> None:
    buf = io.StringIO()
    configure_logging("api", level="INFO", fmt="json", stream=buf)
    engine = create_engine("sqlite://")
    try:
        with pytest.raises(StatementError) as caught, engine.connect() as conn:
            conn.execute(text("SELECT * FROM missing WHERE a = :a"), {"a": PASSWORD})
        assert PASSWORD in str(caught.value)  # the engine itself shows them
        log_error(caught.value, {"stage": "test"})
        # ...and the exception is left as it was.
        assert PASSWORD in str(caught.value)
    finally:
        engine.dispose()
        configure_logging("api", level="WARNING", fmt="console")
        logging.getLogger().handlers.clear()
    (line,) = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert "SELECT * FROM missing" in line["error_message"]
    assert "hidden" in line["error_message"]
    assert "SELECT * FROM missing" in line["stack"]
    assert PASSWORD not in buf.getvalue()


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (
            f'duplicate key value violates unique constraint "uq_users_username"\n'
            f"DETAIL:  Key (username)=({PASSWORD}) already exists.",
            "Key (username)=(",
        ),
        (
            'null value in column "password_hash" of relation "users" violates '
            f"not-null constraint\nDETAIL:  Failing row contains (1, {PASSWORD}, null).",
            "Failing row contains (",
        ),
        (f'invalid input syntax for type integer: "{PASSWORD}"', "type integer"),
        (f'invalid input value for enum project_status: "{PASSWORD}"', "enum"),
    ],
)
def test_database_messages_quoting_values_are_cut(message: str, kept: str) -> None:
    buf = io.StringIO()
    configure_logging("jobs", level="INFO", fmt="json", stream=buf)
    try:
        log_error(
            IntegrityError("UPDATE x SET y = ?", (PASSWORD,), ValueError(message))
        )
    finally:
        configure_logging("api", level="WARNING", fmt="console")
        logging.getLogger().handlers.clear()
    line = json.loads(buf.getvalue())
    assert kept in line["error_message"]
    assert PASSWORD not in buf.getvalue()
