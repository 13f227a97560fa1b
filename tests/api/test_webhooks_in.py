"""Inbound webhooks through the real app (SQLite and PostgreSQL): Standard Webhooks
signatures, timestamps, replays, garbage, processing once, dead letters and the CLI."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from standardwebhooks import Webhook
from typer.testing import CliRunner

from ballast_api.main import create_app
from ballast_common.db import DB, UnitOfWork, run_tx
from ballast_common.models import EventRow, Job, WebhookReceipt
from ballast_common.seed import seed_demo
from ballast_common.webhooks import inbound
from ballast_common.webhooks.cli import app as webhooks_cli
from tests.api.conftest import PASSWORDS, Api, _reset, make_config, open_session

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()


@pytest.fixture
def hooks(backend: str, seeded_dbs: dict[str, str], tmp_path: Path) -> Iterator[Api]:
    db = DB(seeded_dbs[backend])
    _reset(db)
    run_tx(seed_demo, db=db)
    config = make_config(
        tmp_path,
        webhooks={
            "sources": {
                "acme": {"secret": SECRET},
                "rotating": {"secret": f"{OTHER} {SECRET}"},
                "off": {"secret": SECRET, "enabled": False},
            },
            "max_body_kb": 64,
        },
    )
    app = create_app(config=config, db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(
            client, db, config, {u: open_session(db, config, u) for u in PASSWORDS}
        )
        client.portal.call(db.adispose)
    db.dispose()


def signed(
    body: bytes | str,
    *,
    msg_id: str | None = None,
    secret: str = SECRET,
    at: datetime | None = None,
) -> dict[str, str]:
    try:
        text = body if isinstance(body, str) else body.decode("utf-8")
    except UnicodeDecodeError:  # what a sender of bytes that are not UTF-8 would sign
        text = body.decode("latin-1")
    when = at or datetime.now(UTC)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, text),
        "content-type": "application/json",
    }


def post(api: Api, body: bytes, headers: dict[str, str], source: str = "acme") -> Any:
    return api.client.post(f"/v1/webhooks/{source}", content=body, headers=headers)


def count(db: DB, model: Any, *where: Any) -> int:
    with db.session() as session:
        return int(
            session.execute(
                select(func.count()).select_from(model).where(*where)
            ).scalar_one()
        )


BODY = json.dumps({"type": "invoice.paid", "data": {"id": 7, "name": "Zoë"}}).encode()


class TestAccept:
    def test_accepted_fast_then_processed_once_by_its_job(self, hooks: Api) -> None:
        r = post(hooks, BODY, signed(BODY, msg_id="msg_1"))
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "accepted"
        receipt_id = uuid.UUID(r.json()["id"])
        with hooks.db.session() as session:
            receipt = session.get(WebhookReceipt, receipt_id)
            assert receipt is not None
            assert (receipt.status, receipt.event_type) == ("RECEIVED", "invoice.paid")
            job = session.get(Job, receipt.job_id)
            assert job is not None
            assert (job.name, job.status) == ("webhooks.process", "PENDING")
            assert job.kwargs == {"receipt_id": str(receipt_id)}
        assert inbound.process(hooks.db, receipt_id) == "processed"
        # A redelivered job message (at-least-once) does nothing the second time.
        assert inbound.process(hooks.db, receipt_id) == "skipped"
        assert count(hooks.db, EventRow, EventRow.name == "webhook.acme") == 1
        assert (
            count(hooks.db, WebhookReceipt, WebhookReceipt.status == "PROCESSED") == 1
        )

    def test_a_rotated_secret_and_the_old_one_both_verify(self, hooks: Api) -> None:
        for secret in (OTHER, SECRET):
            r = post(hooks, BODY, signed(BODY, secret=secret), source="rotating")
            assert r.status_code == 202, r.text

    def test_duplicate_delivery_is_acknowledged_and_not_queued_again(
        self, hooks: Api
    ) -> None:
        first = post(hooks, BODY, signed(BODY, msg_id="msg_dup"))
        # The sender retries the same message later: new timestamp, same id.
        later = datetime.now(UTC) + timedelta(seconds=30)
        again = post(hooks, BODY, signed(BODY, msg_id="msg_dup", at=later))
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
        assert count(hooks.db, WebhookReceipt) == 1
        assert count(hooks.db, Job, Job.name == "webhooks.process") == 1

    def test_replayed_request_is_not_processed_again(self, hooks: Api) -> None:
        headers = signed(BODY)
        assert post(hooks, BODY, headers).status_code == 202
        for _ in range(3):  # an attacker re-sends the captured request verbatim
            r = post(hooks, BODY, headers)
            assert r.status_code == 200
            assert r.json()["status"] == "duplicate"
        assert count(hooks.db, Job, Job.name == "webhooks.process") == 1

    def test_same_id_from_another_source_is_another_webhook(self, hooks: Api) -> None:
        headers = signed(BODY, msg_id="msg_shared")
        assert post(hooks, BODY, headers).status_code == 202
        r = post(hooks, BODY, signed(BODY, msg_id="msg_shared"), source="rotating")
        assert r.status_code == 202


class TestRejected:
    def test_bad_signature(self, hooks: Api) -> None:
        headers = signed(BODY, secret=OTHER)
        r = post(hooks, BODY, headers)
        assert r.status_code == 401
        assert r.json()["code"] == "webhook_signature"
        assert count(hooks.db, WebhookReceipt) == 0

    def test_body_changed_after_signing(self, hooks: Api) -> None:
        headers = signed(BODY)
        r = post(hooks, BODY.replace(b"7", b"8"), headers)
        assert r.status_code == 401

    @pytest.mark.parametrize("minutes", [-10, 10])
    def test_stale_or_future_timestamp(self, hooks: Api, minutes: int) -> None:
        at = datetime.now(UTC) + timedelta(minutes=minutes)
        r = post(hooks, BODY, signed(BODY, at=at))
        assert r.status_code == 401
        assert r.json()["code"] == "webhook_timestamp"

    @pytest.mark.parametrize(
        "change",
        [
            {"webhook-signature": "v1"},
            {"webhook-signature": "v1,not*base64"},
            {"webhook-signature": "garbage"},
            {"webhook-signature": "v2,abc"},
            {"webhook-timestamp": "nan"},
            {"webhook-timestamp": "1e400"},
            {"webhook-timestamp": "yesterday"},
        ],
    )
    def test_malformed_headers(self, hooks: Api, change: dict[str, str]) -> None:
        r = post(hooks, BODY, {**signed(BODY), **change})
        assert r.status_code == 401, r.text

    def test_missing_headers(self, hooks: Api) -> None:
        headers = signed(BODY)
        del headers["webhook-signature"]
        assert post(hooks, BODY, headers).status_code == 401
        assert (
            post(hooks, BODY, {"content-type": "application/json"}).status_code == 401
        )

    @pytest.mark.parametrize("source", ["nobody", "off", "subscriptions", "Bad Name"])
    def test_unknown_or_disabled_source(self, hooks: Api, source: str) -> None:
        r = post(hooks, BODY, signed(BODY), source=source)
        # "subscriptions" is an admin route: no bearer token, 401.
        assert r.status_code in (401, 404, 405)

    @pytest.mark.parametrize(
        "body",
        [
            b'{"type": "x", "data": "a\\u0000b"}',
            b'{"type": "x\x00"}',
            b'{"type": "\\ud800"}',
            b'{"value": NaN}',
            b"[1, 2, 3]",
            b'"just a string"',
            b"not json at all",
            b"",
            b"\xff\xfe\x00garbage",
            b"[" * 100_000 + b"]" * 100_000,
        ],
    )
    def test_garbage_payloads_get_a_clear_4xx(self, hooks: Api, body: bytes) -> None:
        for content_type in ("application/json", "application/octet-stream"):
            headers = {**signed(body), "content-type": content_type}
            r = post(hooks, body, headers)
            assert 400 <= r.status_code < 500, (content_type, r.status_code, r.text)
        assert count(hooks.db, WebhookReceipt) == 0

    def test_huge_body_is_refused_unread(self, hooks: Api) -> None:
        body = json.dumps({"type": "x", "blob": "a" * 200_000}).encode()
        for content_type in ("application/json", "text/plain"):
            r = post(hooks, body, {**signed(body), "content-type": content_type})
            assert r.status_code == 413, r.text

    def test_overlong_webhook_id(self, hooks: Api) -> None:
        r = post(hooks, BODY, signed(BODY, msg_id="m" * 300))
        assert r.status_code == 422


class TestDeadLetters:
    def test_failure_is_kept_listed_and_replayed(
        self, hooks: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(_uow: UnitOfWork, _receipt: WebhookReceipt) -> None:
            raise RuntimeError("the handler fell over")

        monkeypatch.setitem(inbound.HANDLERS, "acme", broken)
        r = post(hooks, BODY, signed(BODY))
        receipt_id = uuid.UUID(r.json()["id"])
        with pytest.raises(RuntimeError):
            inbound.process(hooks.db, receipt_id)
        inbound.dead_letter(hooks.db, receipt_id, "RuntimeError: the handler fell over")
        dead = inbound.list_receipts(hooks.db)
        assert [d.id for d in dead] == [receipt_id]
        assert dead[0].error == "RuntimeError: the handler fell over"

        env = {"BALLAST_DATABASE__URL": str(hooks.db.url)}
        runner = CliRunner()
        listed = runner.invoke(webhooks_cli, ["list"], env=env)
        assert listed.exit_code == 0, listed.output
        assert str(receipt_id) in listed.output
        assert "handler fell over" in listed.output

        monkeypatch.delitem(inbound.HANDLERS, "acme")
        replayed = runner.invoke(webhooks_cli, ["replay", str(receipt_id)], env=env)
        assert replayed.exit_code == 0, replayed.output
        with hooks.db.session() as session:
            receipt = session.get(WebhookReceipt, receipt_id)
            assert receipt is not None
            assert receipt.status == "RECEIVED"
            job = session.get(Job, receipt.job_id)
            assert job is not None
            assert job.status == "PENDING"
        assert inbound.process(hooks.db, receipt_id) == "processed"
        assert inbound.list_receipts(hooks.db) == []

    def test_cli_errors_are_one_line(self, hooks: Api) -> None:
        env = {"BALLAST_DATABASE__URL": str(hooks.db.url)}
        runner = CliRunner()
        missing = runner.invoke(webhooks_cli, ["replay", str(uuid.uuid4())], env=env)
        assert missing.exit_code == 1
        assert missing.output.strip().startswith("error: no dead letter")
        assert len(missing.output.strip().splitlines()) == 1
        bad = runner.invoke(webhooks_cli, ["replay", "not-a-uuid"], env=env)
        assert bad.exit_code == 2
        nothing = runner.invoke(webhooks_cli, ["replay"], env=env)
        assert nothing.exit_code == 2
        for args in (["--help"], ["list", "--help"], ["replay", "--help"]):
            assert runner.invoke(webhooks_cli, args).exit_code == 0
