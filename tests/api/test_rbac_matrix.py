"""The RBAC matrix: caller role x endpoint x relation to the project → expected answer.

One table (`MATRIX`) says, for every route that touches projects, datasets, jobs or a
project's forms, what each role gets for each relation (columns in `RELATIONS` order:
owner, member-editor, member-viewer, public, stranger). For lists, ``in``/``out`` say
whether the cell's resource is listed (the answer is 200 either way).

`test_every_scoped_route_is_in_the_matrix` fails when a route is added under those
prefixes without a row here, so a route cannot forget its check unnoticed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ballast_api.main import create_app
from tests.api.authz_world import CALLERS, RELATIONS, Cell, World, build
from tests.api.conftest import Api

# Route prefixes whose every route must be in the matrix.
SCOPED = ("/v1/projects", "/v1/datasets", "/v1/jobs", "/v1/schedules", "/v1/forms")


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # the route's path template, as the app declares it
    expect: dict[str, str]  # caller -> 5 answers, in RELATIONS order
    job_status: str = "PENDING"  # the state of the world's jobs for this row
    body: Callable[[World, Cell], dict[str, Any]] | None = None


def _all(code: str) -> str:
    return " ".join([code] * len(RELATIONS))


READ = {
    "admin": _all("200"),
    "editor": "200 200 200 200 404",
    "viewer": "200 200 200 200 404",
}
NOT_READY = {
    "admin": _all("409"),
    "editor": "409 409 409 409 404",
    "viewer": "409 409 409 409 404",
}
LISTED = {"admin": _all("in"), "editor": "in in in in out", "viewer": "in in in in out"}


def _write(ok: str) -> dict[str, str]:
    """Owner and editing members change it; read-only relations 403; strangers 404;
    the viewer role may change nothing (403 whatever the relation)."""
    return {
        "admin": _all(ok),
        "editor": f"{ok} {ok} 403 403 404",
        "viewer": _all("403"),
    }


def _manage(ok: str) -> dict[str, str]:
    """Only the owner (and admins) share a project."""
    return {"admin": _all(ok), "editor": f"{ok} 403 403 403 404", "viewer": _all("403")}


MATRIX: list[Row] = [
    # projects
    Row("GET", "/v1/projects", LISTED),
    Row(
        "POST",
        "/v1/projects",
        {"admin": _all("201"), "editor": _all("201"), "viewer": _all("403")},
        body=lambda w, c: {"name": "New"},
    ),
    Row("GET", "/v1/projects/{project_id}", READ),
    Row(
        "PATCH",
        "/v1/projects/{project_id}",
        _write("200"),
        body=lambda w, c: {"priority": 4},
    ),
    # Deleting needs projects:delete, which only admins hold.
    Row(
        "DELETE",
        "/v1/projects/{project_id}",
        {"admin": _all("204"), "editor": _all("403"), "viewer": _all("403")},
    ),
    Row("GET", "/v1/projects/{project_id}/members", READ),
    Row(
        "POST",
        "/v1/projects/{project_id}/members",
        _manage("200"),
        body=lambda w, c: {"username": "target", "role": "viewer"},
    ),
    Row(
        "PUT",
        "/v1/projects/{project_id}/members/{user_id}",
        _manage("200"),
        body=lambda w, c: {"role": "viewer"},
    ),
    Row("DELETE", "/v1/projects/{project_id}/members/{user_id}", _manage("204")),
    # datasets follow their project
    Row("POST", "/v1/datasets", _write("202")),
    Row("GET", "/v1/datasets", LISTED),
    Row("GET", "/v1/datasets/{dataset_id}", READ),
    # Visibility before readiness: the world's datasets have no data yet (409).
    Row("GET", "/v1/datasets/{dataset_id}/export", NOT_READY),
    # jobs follow their project
    Row("GET", "/v1/jobs/tasks", {c: _all("200") for c in CALLERS}),
    Row(
        "POST",
        "/v1/jobs",
        _write("201"),
        body=lambda w, c: {
            "name": "analysis.bootstrap",
            "kwargs": {"dataset_id": str(c.dataset), "columns": ["x"]},
        },
    ),
    Row("GET", "/v1/jobs", LISTED),
    Row("GET", "/v1/jobs/summary", {c: _all("200") for c in CALLERS}),
    Row("GET", "/v1/jobs/{job_id}", READ),
    Row("GET", "/v1/jobs/{job_id}/result", READ, job_status="COMPLETED"),
    Row("GET", "/v1/jobs/{job_id}/result/export", NOT_READY),
    Row("POST", "/v1/jobs/{job_id}/cancel", _write("202")),
    Row("POST", "/v1/jobs/{job_id}/retry", _write("202"), job_status="FAILED"),
    # schedules follow their project like jobs (jobs:write is the editor's)
    Row(
        "POST",
        "/v1/schedules",
        _write("201"),
        body=lambda w, c: {
            "name": f"s {uuid.uuid4().hex}",
            "task": "analysis.bootstrap",
            "kwargs": {"dataset_id": str(c.dataset), "columns": ["x"]},
            "cron": "0 4 * * *",
            "project_id": str(c.project),
        },
    ),
    Row("GET", "/v1/schedules", LISTED),
    Row("GET", "/v1/schedules/{schedule_id}", READ),
    Row("GET", "/v1/schedules/{schedule_id}/runs", READ),
    Row(
        "PATCH",
        "/v1/schedules/{schedule_id}",
        _write("200"),
        body=lambda w, c: {"enabled": False},
    ),
    Row("DELETE", "/v1/schedules/{schedule_id}", _write("204")),
    # a project's saved forms follow the project (forms:write is the editor's)
    Row(
        "PUT",
        "/v1/forms/{form_id}",
        _write("200"),
        body=lambda w, c: {"data": {"a": 2}, "expected_version": 1},
    ),
    Row("GET", "/v1/forms/{form_id}", READ),
]


def _url(row: Row, world: World, cell: Cell) -> tuple[str, dict[str, str]]:
    path = row.route.format(
        project_id=cell.project,
        dataset_id=cell.dataset,
        job_id=cell.job,
        schedule_id=cell.schedule,
        user_id=world.users["target"],
        form_id=f"project.{cell.project}",
    )
    params = {"size": "200"} if row.method == "GET" and "{" not in row.route else {}
    if row.route == "/v1/datasets" and row.method == "POST":
        params = {"name": "Upload", "format": "csv", "project_id": str(cell.project)}
    return path, params


def _answer(api: Api, row: Row, world: World, caller: str, cell: Cell) -> str:
    path, params = _url(row, world, cell)
    kwargs: dict[str, Any] = {"params": params, "headers": api.h(caller)}
    if row.body is not None:
        kwargs["json"] = row.body(world, cell)
    if row.route == "/v1/datasets" and row.method == "POST":
        kwargs["content"] = b"x\n1\n2\n"
    response = api.client.request(row.method, path, **kwargs)
    expected_list = row.method == "GET" and "{" not in row.route
    if expected_list and "in" in row.expect[caller] and response.status_code == 200:
        ids = {item["id"] for item in response.json()["items"]}
        wanted = {
            "/v1/projects": cell.project,
            "/v1/datasets": cell.dataset,
            "/v1/jobs": cell.job,
            "/v1/schedules": cell.schedule,
        }[row.route]
        return "in" if str(wanted) in ids else "out"
    return str(response.status_code)


def test_rbac_matrix(api: Api) -> None:
    """Every row x caller x relation answers what the table says (all mismatches at once).

    One world per job state; within it the rows run in table order, deletions last.
    """
    wrong: list[str] = []
    for job_status in dict.fromkeys(row.job_status for row in MATRIX):
        world = build(api.db, job_status=job_status)
        rows = [row for row in MATRIX if row.job_status == job_status]
        # Deleting comes last: the other rows need what it removes.
        rows.sort(key=_deletes_last)
        for row in rows:
            wrong.extend(_check(api, world, row))
    assert not wrong, "\n".join(wrong)


def _deletes_last(row: Row) -> tuple[bool, bool]:
    """Deleting a resource comes after the rows that need it, the projects last of all
    (what hangs off a deleted project is gone with it)."""
    deletes = row.method == "DELETE" and row.route.count("/") == 3
    return (deletes and row.route == "/v1/projects/{project_id}", deletes)


def _check(api: Api, world: World, row: Row) -> list[str]:
    wrong: list[str] = []
    for caller in CALLERS:
        expected = row.expect[caller].split()
        assert len(expected) == len(RELATIONS), row
        for relation, want in zip(RELATIONS, expected, strict=True):
            cell = world.cells[(caller, relation)]
            if row.route.endswith("/members/{user_id}") and row.method == "DELETE":
                _share_with_target(api, world, cell)
            got = _answer(api, row, world, caller, cell)
            if got != want:
                wrong.append(
                    f"{row.method} {row.route} as {caller} ({relation}): "
                    f"got {got}, want {want}"
                )
    return wrong


def _share_with_target(api: Api, world: World, cell: Cell) -> None:
    """Make sure there is a member to remove (as an admin, who may always share)."""
    response = api.client.put(
        f"/v1/projects/{cell.project}/members/{world.users['target']}",
        json={"role": "viewer"},
        headers=api.h("admin"),
    )
    assert response.status_code == 200, response.text


def test_every_scoped_route_is_in_the_matrix() -> None:
    """A new route under a scoped prefix must get a row (and so a decision) here."""
    # The OpenAPI document lists every route the app serves (included routers too).
    paths = create_app().openapi()["paths"]
    declared = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith(SCOPED)
        for method in operations
    }
    covered = {(row.method, row.route) for row in MATRIX}
    assert declared - covered == set(), "routes without a row in MATRIX"
    assert covered - declared == set(), "rows for routes that do not exist"
