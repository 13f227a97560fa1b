"""Schemathesis against the api's own OpenAPI document: bad input is a 4xx, never a 500.

Runs in-process (ASGI) on SQLite with an editor's and an admin's token; every generated
request must get a non-5xx answer in the one error shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from ballast_api.main import create_app
from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from tests.api.conftest import make_config, open_session

ERROR_KEYS = {"code", "message", "details", "trace_id"}


@pytest.fixture(scope="module")
def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    # A database of its own: the fuzzer creates users and rows other tests must not see.
    tmp = Path(tmp_path_factory.mktemp("fuzz"))
    db = DB(f"sqlite:///{tmp}/fuzz.db")
    migrate(db=db)
    run_tx(seed_demo, db=db)
    config = make_config(tmp)
    app = create_app(config=config, db=db)
    tokens = {u: open_session(db, config, u) for u in ("admin", "editor")}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, tokens
        client.portal.call(db.adispose)
    db.dispose()


def test_no_server_errors(fuzz_target: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = fuzz_target
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        admin_only = operation.path.startswith(("/v1/audit", "/v1/users"))
        _fuzz(
            client,
            operation,
            tokens["admin"] if admin_only else tokens["editor"],
            failures,
        )
    assert operations >= 15
    assert failures == []


def _fuzz(client: TestClient, operation: Any, token: str, failures: list[str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        body = None if type(case.body).__name__ == "NotSet" else case.body
        response = client.request(
            case.method,
            case.formatted_path,
            params=case.query or None,
            json=body,
            headers={**(case.headers or {}), "Authorization": f"Bearer {token}"},
        )
        if response.status_code >= 500 or (
            response.status_code >= 400 and set(response.json()) != ERROR_KEYS
        ):
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code} "
                f"{response.text[:200]}"
            )

    check()
