"""Schemathesis against the api's own OpenAPI document, authenticated, in-process (ASGI).

Every operation is fuzzed with schema-valid and schema-invalid input, then the api is
explored statefully along the links schemathesis infers (create a project, then read,
patch and delete it; save a form, then load it). Each response must pass schemathesis'
own checks: no server error, a documented status, a body and headers matching the
schema, and the one error shape for every 4xx.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as st_checks
from schemathesis.core.failures import FailureGroup

from ballast_api.main import create_app
from ballast_common.db import DB, migrate, run_tx
from ballast_common.seed import seed_demo
from tests.api.conftest import make_config, open_session

ERROR_KEYS = {"code", "message", "details", "trace_id"}
# Response checks every call must pass (schemathesis' own).
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
]
# Admin-only operations are fuzzed as admin, the rest as an editor.
ADMIN_PREFIXES = ("/v1/audit", "/v1/users")


@dataclass
class Target:
    client: TestClient
    tokens: dict[str, str]
    path: Path
    snapshot: Path

    def restore(self) -> None:
        """Put the database back as seeded (each stateful scenario starts equal)."""
        with sqlite3.connect(self.snapshot) as src, sqlite3.connect(self.path) as dst:
            src.backup(dst)


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    # A database of its own: the fuzzer creates users and rows other tests must not see.
    tmp = Path(tmp_path_factory.mktemp("fuzz"))
    path = tmp / "fuzz.db"
    db = DB(f"sqlite:///{path}")
    migrate(db=db)
    run_tx(seed_demo, db=db)
    config = make_config(tmp)
    app = create_app(config=config, db=db)
    tokens = {u: open_session(db, config, u) for u in ("admin", "editor")}
    snapshot = tmp / "seeded.db"
    with sqlite3.connect(path) as src, sqlite3.connect(snapshot) as dst:
        src.backup(dst)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Target(client, tokens, path, snapshot)
        client.portal.call(db.adispose)
    db.dispose()


def _token(tokens: dict[str, str], path: str) -> str:
    return tokens["admin"] if path.startswith(ADMIN_PREFIXES) else tokens["editor"]


def _error_shape(response: Any) -> str | None:
    if response.status_code >= 400 and set(response.json()) != ERROR_KEYS:
        return f"{response.status_code} not in the error shape: {response.text[:200]}"
    return None


def test_every_operation(fuzz_target: Target) -> None:
    client, tokens = fuzz_target.client, fuzz_target.tokens
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        _fuzz(operation, _token(tokens, operation.path), failures)
    assert operations >= 30
    assert failures == []


def _fuzz(operation: Any, token: str, failures: list[str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
        except FailureGroup as exc:
            failures.append(f"{case.method} {case.formatted_path}: {exc}"[:600])
            return
        problem = _error_shape(response)
        if problem:
            failures.append(f"{case.method} {case.formatted_path}: {problem}")

    check()


def test_stateful_links(fuzz_target: Target) -> None:
    client, tokens = fuzz_target.client, fuzz_target.tokens
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    machine = schema.as_state_machine()
    failures: list[str] = []
    steps = {"n": 0}

    class Workflow(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Responses decide which links hypothesis may follow: the same draws must
            # meet the same data, or it reports the scenario as flaky.
            fuzz_target.restore()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {_token(tokens, case.path)}"}}

        def validate_response(
            self, response: Any, case: schemathesis.Case, **kwargs: Any
        ) -> None:
            steps["n"] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:
                failures.append(f"{case.method} {case.formatted_path}: {exc}"[:600])
            problem = _error_shape(response)
            if problem:
                failures.append(f"{case.method} {case.formatted_path}: {problem}")

    Workflow.run(
        settings=settings(
            max_examples=40,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    assert steps["n"] > 40
    assert failures == []
