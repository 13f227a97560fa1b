"""Admins' outbound webhook API: subscriptions, the delivery log, redelivery."""

from __future__ import annotations

import uuid

from ballast_common import jobs
from ballast_common.db import UnitOfWork, run_tx
from ballast_common.models import utcnow
from ballast_common.models.webhook import system_job
from tests.api.conftest import Api

URL = "/v1/webhooks/subscriptions"


def test_subscriptions_and_deliveries(api: Api) -> None:
    body = {"url": "https://hooks.example.com/in", "events": ["job.completed"]}
    assert api.client.post(URL, json=body, headers=api.h("editor")).status_code == 403
    assert api.client.post(URL, json=body).status_code == 401
    for bad in (
        {**body, "events": ["job.exploded"]},
        {**body, "events": []},
        {**body, "url": "ftp://example.com/x"},
        {**body, "url": "https://user:pw@example.com/x"},
        {**body, "extra": 1},
    ):
        assert api.client.post(URL, json=bad, headers=api.h("admin")).status_code == 422

    created = api.client.post(URL, json=body, headers=api.h("admin"))
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["secret"].startswith("whsec_")
    assert api.audit_count(action="create", resource_type="webhook_subscriptions") == 1
    assert "whsec_" not in str(api.sql("SELECT new_values FROM audit_log"))

    listed = api.client.get(URL, headers=api.h("admin")).json()
    assert [(s["id"], s["circuit"]) for s in listed] == [(sub["id"], "closed")]
    assert "secret" not in listed[0]

    def finish(uow: UnitOfWork) -> None:
        job = system_job("demo.sleep", {})
        job.status = "RUNNING"
        uow.session.add(job)
        uow.flush()
        jobs.transition(
            uow, job, "job_completed", status="COMPLETED", completed_at=utcnow()
        )

    run_tx(finish, db=api.db)
    log = api.client.get(
        "/v1/webhooks/deliveries",
        params={"subscription_id": sub["id"]},
        headers=api.h("admin"),
    )
    assert log.status_code == 200
    (delivery,) = log.json()
    assert (delivery["event_type"], delivery["status"]) == ("job.completed", "PENDING")
    assert (
        api.client.get("/v1/webhooks/deliveries", headers=api.h("viewer")).status_code
        == 403
    )

    again = api.client.post(
        f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=api.h("admin")
    )
    assert again.status_code == 202, again.text
    assert again.json()["job_id"] != delivery["job_id"]
    missing = api.client.post(
        f"/v1/webhooks/deliveries/{uuid.uuid4()}/redeliver", headers=api.h("admin")
    )
    assert missing.status_code == 404

    assert (
        api.client.delete(f"{URL}/{sub['id']}", headers=api.h("admin")).status_code
        == 204
    )
    assert (
        api.client.delete(f"{URL}/{sub['id']}", headers=api.h("admin")).status_code
        == 404
    )
    assert (
        api.client.get("/v1/webhooks/deliveries", headers=api.h("admin")).json() == []
    )
