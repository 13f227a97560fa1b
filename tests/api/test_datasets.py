"""Dataset upload: the file lands in object storage, the row and its import job commit
together, the job's message follows; bad uploads leave nothing behind."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ballast_common.storage import LocalObjectStore
from tests.api.conftest import Api
from tests.api.test_jobs import sent

CSV = b"city,temp\nOslo,4.5\nRome,18.0\n"


def upload(api: Api, data: bytes, user: str = "editor", **params: Any) -> Any:
    filename = params.pop("filename", "weather.csv")
    return api.client.post(
        "/v1/datasets",
        params={"name": "Weather", **params},
        content=data,
        headers=api.h(user, **{"X-Filename": filename}),
    )


def objects(api: Api) -> list[str]:
    return LocalObjectStore(Path(api.config.paths.data_dir) / "objects").list()


def test_upload_creates_dataset_and_import_job(api: Api) -> None:
    resp = upload(api, CSV)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    dataset, job = body["dataset"], body["job"]
    assert dataset["status"] == "PENDING"
    assert dataset["format"] == "csv"
    assert dataset["size_bytes"] == len(CSV)
    assert len(dataset["sha256"]) == 64
    assert dataset["job_id"] == job["id"]
    assert job["name"] == "datasets.import"
    assert job["kwargs"] == {"dataset_id": dataset["id"]}
    assert objects(api) == [f"datasets/{dataset['id']}/source.csv"]
    assert [m["queue"] for m in sent(api)] == ["imports"]
    detail = api.client.get(f"/v1/datasets/{dataset['id']}", headers=api.h("editor"))
    assert detail.status_code == 200
    assert detail.json()["preview"] == []
    assert detail.json()["can"] == ["read", "write"]
    listing = api.client.get("/v1/datasets", headers=api.h("editor")).json()
    assert listing["total"] == 1
    # A dataset in no project is its creator's (and the admins'): others never see it.
    hidden = api.client.get(f"/v1/datasets/{dataset['id']}", headers=api.h("viewer"))
    assert hidden.status_code == 404
    assert api.client.get("/v1/datasets", headers=api.h("viewer")).json()["total"] == 0
    assert api.client.get("/v1/datasets", headers=api.h("admin")).json()["total"] == 1


def test_format_from_the_name_or_the_query(api: Api) -> None:
    assert upload(api, b"[]", filename="x.JSON").json()["dataset"]["format"] == "json"
    resp = upload(api, b"PAR1", filename="noext", format="parquet")
    assert resp.json()["dataset"]["format"] == "parquet"
    bad = upload(api, CSV, filename="notes.doc")
    assert bad.status_code == 422
    assert "cannot tell the format" in bad.json()["message"]


def test_bad_uploads_leave_nothing(api: Api) -> None:
    assert upload(api, b"").status_code == 422
    assert upload(api, CSV, user="viewer").status_code == 403
    missing = upload(api, CSV, project_id=str(uuid.uuid4()))
    assert missing.status_code == 404
    assert objects(api) == []
    assert sent(api) == []
    assert api.client.get("/v1/datasets", headers=api.h("editor")).json()["total"] == 0


def test_too_large_is_413(api: Api) -> None:
    api.config.datasets.max_upload_mb = 0.00001  # ~10 bytes
    resp = upload(api, CSV)
    assert resp.status_code == 413
    assert "larger than" in resp.json()["message"]
    assert objects(api) == []


def test_a_repeated_upload_imports_once(api: Api) -> None:
    key = uuid.uuid4().hex

    def post(data: bytes) -> Any:
        return api.client.post(
            "/v1/datasets",
            params={"name": "Weather"},
            content=data,
            headers=api.h("editor", **{"X-Filename": "w.csv", "Idempotency-Key": key}),
        )

    first = post(CSV)
    assert first.status_code == 202, first.text
    again = post(CSV)
    assert (again.status_code, again.json()) == (202, first.json())
    # One dataset, one stored file, one import job.
    dataset_id = first.json()["dataset"]["id"]
    assert objects(api) == [f"datasets/{dataset_id}/source.csv"]
    assert [m["queue"] for m in sent(api)] == ["imports"]
    assert api.client.get("/v1/datasets", headers=api.h("editor")).json()["total"] == 1
    # The same key with another file is refused, and leaves no file behind.
    other = post(CSV + b"Paris,11.0\n")
    assert other.status_code == 422
    assert objects(api) == [f"datasets/{dataset_id}/source.csv"]
