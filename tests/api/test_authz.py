"""Resource-level authorization: ownership, sharing, public projects, and what follows a
project (datasets, jobs, its forms). The full role x route x relation table is in
test_rbac_matrix.py; these tests tell the stories behind it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from ballast_common.jobs import schedules
from ballast_common.models import utcnow
from tests.api.authz_world import make_user
from tests.api.conftest import Api, open_session


def _project(api: Api, user: str, **fields: Any) -> dict[str, Any]:
    response = api.client.post(
        "/v1/projects", json={"name": "P", **fields}, headers=api.h(user)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _dataset(api: Api, user: str, project_id: str, name: str) -> dict[str, Any]:
    """A dataset import into a project: ``{"dataset": ..., "job": ...}``."""
    response = api.client.post(
        "/v1/datasets",
        params={"name": name, "format": "csv", "project_id": project_id},
        content=b"x\n1\n",
        headers=api.h(user),
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _other_editor(api: Api) -> str:
    """A second editor, signed in (`api.h("other")` works afterwards)."""
    make_user(api.db, "other", "editor")
    api.tokens["other"] = open_session(api.db, api.config, "other")
    return "other"


def _uid(api: Api, username: str) -> str:
    return str(api.sql("SELECT id FROM users WHERE username = :u", u=username)[0][0])


def test_an_editor_cannot_change_a_project_someone_else_owns(api: Api) -> None:
    private = _project(api, "admin", name="Admin's")
    public = _project(api, "admin", name="Admin's public", is_public=True)
    hidden = api.client.patch(
        f"/v1/projects/{private['id']}",
        json={"name": "mine now"},
        headers=api.h("editor"),
    )
    assert hidden.status_code == 404  # not even its existence leaks
    seen = api.client.patch(
        f"/v1/projects/{public['id']}",
        json={"name": "mine now"},
        headers=api.h("editor"),
    )
    assert seen.status_code == 403
    assert seen.json()["details"]["access"] == "read"
    for p in (private, public):
        stored = api.client.get(f"/v1/projects/{p['id']}", headers=api.h("admin"))
        assert stored.json()["name"] != "mine now"
        assert stored.json()["version"] == 1


def test_is_public_decides_who_sees_a_project(api: Api) -> None:
    private = _project(api, "editor", name="Private")
    public = _project(api, "editor", name="Public", is_public=True)
    assert (
        api.client.get(
            f"/v1/projects/{private['id']}", headers=api.h("viewer")
        ).status_code
        == 404
    )
    got = api.client.get(f"/v1/projects/{public['id']}", headers=api.h("viewer"))
    assert got.status_code == 200
    assert got.json()["can"] == ["read"]
    listed = api.client.get(
        "/v1/projects", params={"q": "Private"}, headers=api.h("viewer")
    ).json()
    assert listed["total"] == 0
    assert listed["items"] == []
    # The owner may take it private again; then the viewer loses it.
    api.client.patch(
        f"/v1/projects/{public['id']}",
        json={"is_public": False},
        headers=api.h("editor"),
    )
    assert (
        api.client.get(
            f"/v1/projects/{public['id']}", headers=api.h("viewer")
        ).status_code
        == 404
    )
    mine = api.client.get(f"/v1/projects/{private['id']}", headers=api.h("editor"))
    assert mine.json()["can"] == ["read", "write", "share"]
    assert api.client.get(
        f"/v1/projects/{private['id']}", headers=api.h("admin")
    ).json()["can"] == ["read", "write", "share", "delete"]


def test_sharing_grants_and_revokes_and_is_audited(api: Api) -> None:
    other = _other_editor(api)
    p = _project(api, "editor", name="Shared")
    url = f"/v1/projects/{p['id']}"
    other_id, viewer_id = _uid(api, other), _uid(api, "viewer")
    assert api.client.get(url, headers=api.h(other)).status_code == 404

    as_viewer = api.client.put(
        f"{url}/members/{other_id}", json={"role": "viewer"}, headers=api.h("editor")
    )
    assert as_viewer.status_code == 200, as_viewer.text
    assert as_viewer.json()["role"] == "viewer"
    assert api.client.get(url, headers=api.h(other)).json()["can"] == ["read"]
    assert (
        api.client.patch(url, json={"priority": 1}, headers=api.h(other)).status_code
        == 403
    )

    api.client.put(
        f"{url}/members/{other_id}", json={"role": "editor"}, headers=api.h("editor")
    )
    changed = api.client.patch(url, json={"priority": 1}, headers=api.h(other))
    assert changed.status_code == 200
    assert changed.json()["can"] == ["read", "write"]
    # An editing member may save the form as it is, but not publish the project...
    assert (
        api.client.patch(
            url, json={"is_public": False}, headers=api.h(other)
        ).status_code
        == 200
    )
    publish = api.client.patch(url, json={"is_public": True}, headers=api.h(other))
    assert publish.status_code == 403
    assert publish.json()["details"]["fields"] == ["is_public"]
    # ...nor share it further.
    assert (
        api.client.put(
            f"{url}/members/{viewer_id}", json={"role": "viewer"}, headers=api.h(other)
        ).status_code
        == 403
    )
    members = api.client.get(f"{url}/members", headers=api.h(other)).json()
    assert [(m["username"], m["role"]) for m in members] == [("other", "editor")]

    assert (
        api.client.delete(
            f"{url}/members/{other_id}", headers=api.h("editor")
        ).status_code
        == 204
    )
    assert (
        api.client.delete(
            f"{url}/members/{other_id}", headers=api.h("editor")
        ).status_code
        == 204
    )
    assert api.client.get(url, headers=api.h(other)).status_code == 404
    actions = [
        (r[0], r[1])
        for r in api.sql(
            "SELECT action, u.username FROM audit_log a JOIN users u ON u.id = a.user_id "
            "WHERE resource_type = 'projects' AND resource_id = :i AND action LIKE 'member%' "
            "ORDER BY a.id",
            i=p["id"],
        )
    ]
    assert actions == [
        ("member_set", "editor"),
        ("member_set", "editor"),
        ("member_removed", "editor"),
    ]


def test_sharing_by_username(api: Api) -> None:
    """The sharing form names a user by username: the same member row and audit as by
    id; an unknown, inactive or odd name is a 422 that changes nothing."""
    project = _project(api, "editor", name="By name")
    path = f"/v1/projects/{project['id']}/members"
    added = api.client.post(
        path, json={"username": "viewer", "role": "editor"}, headers=api.h("editor")
    )
    assert added.status_code == 200, added.text
    assert uuid.UUID(added.json()["user_id"]) == uuid.UUID(_uid(api, "viewer"))
    assert added.json()["role"] == "editor"
    again = api.client.post(
        path, json={"username": "viewer", "role": "editor"}, headers=api.h("editor")
    )
    assert again.status_code == 200
    listed = api.client.get(path, headers=api.h("viewer")).json()
    assert [(m["username"], m["role"]) for m in listed] == [("viewer", "editor")]
    audits = api.sql(
        "SELECT count(*) FROM audit_log WHERE action = 'member_set' AND resource_id = :p",
        p=project["id"],
    )
    assert audits[0][0] == 1
    make_user(api.db, "gone", "viewer")
    api.sql("UPDATE users SET is_active = false WHERE username = 'gone'")
    for body in (
        {"username": "nobody"},
        {"username": "gone"},
        {"username": ""},
        {"username": "x" * 65},
        {"username": "viewer", "role": "owner"},
        {"username": "viewer", "extra": 1},
        {"username": None},
        {"username": "a\u0000b"},
        {"username": "editor"},  # the owner already has every right
    ):
        resp = api.client.post(path, json=body, headers=api.h("editor"))
        assert resp.status_code == 422, (body, resp.text)
    assert len(api.client.get(path, headers=api.h("editor")).json()) == 1
    # Only who may share: a member editor may not.
    resp = api.client.post(path, json={"username": "admin"}, headers=api.h("viewer"))
    assert resp.status_code == 403


def test_bad_sharing_requests_are_4xx(api: Api) -> None:
    p = _project(api, "editor")
    url = f"/v1/projects/{p['id']}/members"
    owner = _uid(api, "editor")
    viewer = _uid(api, "viewer")
    cases = [
        (f"{url}/{owner}", {"role": "viewer"}, 422),  # the owner is no member
        (f"{url}/{uuid.uuid4()}", {"role": "viewer"}, 422),  # no such user
        (f"{url}/{viewer}", {"role": "admin"}, 422),
        (f"{url}/{viewer}", {"role": None}, 422),
        (f"{url}/{viewer}", {"role": "viewer", "x": 1}, 422),
        (f"{url}/not-a-uuid", {"role": "viewer"}, 422),
        (f"/v1/projects/{uuid.uuid4()}/members/{viewer}", {"role": "viewer"}, 404),
    ]
    for path, body, status in cases:
        response = api.client.put(path, json=body, headers=api.h("editor"))
        assert response.status_code == status, (path, body, response.text)
    assert api.client.get(url, headers=api.h("editor")).json() == []


def test_datasets_and_jobs_follow_their_project(api: Api) -> None:
    private = _project(api, "admin", name="Admin's")
    upload = api.client.post(
        "/v1/datasets",
        params={"name": "D", "format": "csv", "project_id": private["id"]},
        content=b"x\n1\n",
        headers=api.h("editor"),
    )
    assert upload.status_code == 404
    assert api.sql("SELECT count(*) FROM datasets")[0][0] == 0
    mine = api.client.post(
        "/v1/datasets",
        params={"name": "D", "format": "csv", "project_id": private["id"]},
        content=b"x\n1\n",
        headers=api.h("admin"),
    )
    assert mine.status_code == 202, mine.text
    dataset, job = mine.json()["dataset"], mine.json()["job"]
    assert api.sql("SELECT project_id FROM jobs")[0][0] is not None
    for path in (f"/v1/datasets/{dataset['id']}", f"/v1/jobs/{job['id']}"):
        assert api.client.get(path, headers=api.h("editor")).status_code == 404
    listed = api.client.get("/v1/datasets", headers=api.h("editor")).json()
    assert listed["total"] == 0
    # Shared with the editor, both come into view (the job is the admin's).
    api.client.put(
        f"/v1/projects/{private['id']}/members/{_uid(api, 'editor')}",
        json={"role": "viewer"},
        headers=api.h("admin"),
    )
    got = api.client.get(f"/v1/datasets/{dataset['id']}", headers=api.h("editor"))
    assert got.status_code == 200
    assert got.json()["can"] == ["read"]
    assert (
        api.client.get(f"/v1/jobs/{job['id']}", headers=api.h("editor")).status_code
        == 200
    )
    assert api.client.get("/v1/jobs", headers=api.h("editor")).json()["total"] == 1
    assert (
        api.client.get(
            "/v1/jobs", params={"mine": "true"}, headers=api.h("editor")
        ).json()["total"]
        == 0
    )
    # Reading is not changing: no analysis of it, no cancelling its job.
    start = api.client.post(
        "/v1/jobs",
        json={
            "name": "analysis.bootstrap",
            "kwargs": {"dataset_id": dataset["id"], "columns": ["x"]},
        },
        headers=api.h("editor"),
    )
    assert start.status_code == 403
    cancel = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.h("editor"))
    assert cancel.status_code == 403
    # A job on a dataset I cannot see answers like a missing dataset.
    hidden = _project(api, "admin", name="Hidden")
    other = _dataset(api, "admin", hidden["id"], "H")["dataset"]
    blind = api.client.post(
        "/v1/jobs",
        json={
            "name": "analysis.bootstrap",
            "kwargs": {"dataset_id": other["id"], "columns": ["x"]},
        },
        headers=api.h("editor"),
    )
    assert blind.status_code == 404


def test_a_jobs_can_list_says_what_the_caller_may_do(api: Api) -> None:
    """Jobs carry `can` like projects and datasets, so the ui offers Cancel and Retry
    on exactly the jobs the api lets the caller change: a project editor may act on
    another user's job of the project, a project viewer may not."""
    private = _project(api, "admin", name="Shared")
    job = _dataset(api, "admin", private["id"], "D")["job"]
    own = api.client.post(
        "/v1/jobs", json={"name": "demo.sleep", "kwargs": {}}, headers=api.h("editor")
    )
    assert own.status_code in (201, 202), own.text

    def can(user: str) -> dict[str, list[str]]:
        listed = api.client.get("/v1/jobs", headers=api.h(user)).json()["items"]
        for item in listed:
            one = api.client.get(f"/v1/jobs/{item['id']}", headers=api.h(user))
            assert one.json()["can"] == item["can"]
        return {item["id"]: item["can"] for item in listed}

    member = f"/v1/projects/{private['id']}/members/{_uid(api, 'editor')}"
    api.client.put(member, json={"role": "viewer"}, headers=api.h("admin"))
    assert can("editor") == {
        own.json()["id"]: ["read", "write"],
        job["id"]: ["read"],
    }
    api.client.put(member, json={"role": "editor"}, headers=api.h("admin"))
    assert can("editor")[job["id"]] == ["read", "write"]
    assert set(map(tuple, can("admin").values())) == {("read", "write")}
    # And the api agrees: the editor member may cancel it now.
    cancel = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.h("editor"))
    assert cancel.status_code == 202, cancel.text
    # The viewer (no jobs:write) reads what it may see, changes nothing.
    api.client.put(
        f"/v1/projects/{private['id']}/members/{_uid(api, 'viewer')}",
        json={"role": "editor"},
        headers=api.h("admin"),
    )
    assert can("viewer") == {job["id"]: ["read"]}


def test_a_projects_form_follows_the_project(api: Api) -> None:
    p = _project(api, "admin")
    form = f"/v1/forms/project-extras.{p['id']}"
    saved = api.client.put(
        form,
        json={"data": {"notes": "x"}, "expected_version": 0},
        headers=api.h("admin"),
    )
    assert saved.status_code == 201
    assert api.client.get(form, headers=api.h("editor")).status_code == 404
    overwrite = api.client.put(
        form, json={"data": {"notes": "y"}, "force": True}, headers=api.h("editor")
    )
    assert overwrite.status_code == 404
    assert api.client.get(form, headers=api.h("admin")).json()["data"] == {"notes": "x"}
    # Forms of nothing in particular stay shared by everyone with forms:write.
    assert (
        api.client.put(
            "/v1/forms/settings.team", json={"data": {}}, headers=api.h("editor")
        ).status_code
        == 201
    )


def test_only_the_owner_or_an_admin_deletes(api: Api) -> None:
    p = _project(api, "editor")
    # Editors hold no projects:delete at all; admins delete anyone's.
    assert (
        api.client.delete(
            f"/v1/projects/{p['id']}", headers=api.h("editor")
        ).status_code
        == 403
    )
    assert (
        api.client.delete(f"/v1/projects/{p['id']}", headers=api.h("admin")).status_code
        == 204
    )
    assert (
        api.client.delete(f"/v1/projects/{p['id']}", headers=api.h("admin")).status_code
        == 204
    )
    assert (
        api.client.get(f"/v1/projects/{p['id']}", headers=api.h("editor")).status_code
        == 404
    )


def test_a_role_change_or_deactivation_ends_the_users_sessions(api: Api) -> None:
    # Not the shared demo editor: its roles outlive this test.
    editor = _uid(api, _other_editor(api))
    second = open_session(api.db, api.config, "other")
    for token in (api.tokens["other"], second):
        me = api.client.get(
            "/v1/sessions/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200
    demoted = api.client.patch(
        f"/v1/users/{editor}", json={"roles": ["viewer"]}, headers=api.h("admin")
    )
    assert demoted.status_code == 200
    for token in (api.tokens["other"], second):
        old = api.client.post(
            "/v1/projects",
            json={"name": "with the old rights"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert old.status_code == 401
    ended = api.sql("SELECT new_values FROM audit_log WHERE action = 'logout_all'")
    assert len(ended) == 1
    assert '"role_change"' in str(ended[0][0]).replace("'", '"')
    # A change that leaves the roles as they are ends nothing.
    fresh = open_session(api.db, api.config, "other")
    same = api.client.patch(
        f"/v1/users/{editor}",
        json={"roles": ["viewer"], "display_name": "Ed"},
        headers=api.h("admin"),
    )
    assert same.status_code == 200
    assert (
        api.client.get(
            "/v1/sessions/me", headers={"Authorization": f"Bearer {fresh}"}
        ).status_code
        == 200
    )
    off = api.client.patch(
        f"/v1/users/{editor}", json={"is_active": False}, headers=api.h("admin")
    )
    assert off.status_code == 200
    assert (
        api.sql(
            "SELECT count(*) FROM sessions WHERE user_id = :i AND revoked_at IS NULL",
            i=editor,
        )[0][0]
        == 0
    )
    # The admin's own session is untouched by changing someone else.
    assert api.client.get("/v1/sessions/me", headers=api.h("admin")).status_code == 200


def test_schedules_follow_their_project_and_so_do_their_jobs(api: Api) -> None:
    private = _project(api, "admin", name="Admin's")
    dataset = api.client.post(
        "/v1/datasets",
        params={"name": "D", "format": "csv", "project_id": private["id"]},
        content=b"x\n1\n",
        headers=api.h("admin"),
    ).json()["dataset"]
    body = {
        "name": "nightly",
        "task": "analysis.bootstrap",
        "kwargs": {"dataset_id": dataset["id"], "columns": ["x"]},
        "cron": "*/5 * * * *",
    }
    # Neither by naming the project nor through its dataset: it is not the editor's.
    for extra in ({}, {"project_id": private["id"]}):
        refused = api.client.post(
            "/v1/schedules", json={**body, **extra}, headers=api.h("editor")
        )
        assert refused.status_code == 404, refused.text
    made = api.client.post("/v1/schedules", json=body, headers=api.h("admin"))
    assert made.status_code == 201, made.text
    assert made.json()["project_id"] == private["id"]
    sid = made.json()["id"]
    assert (
        api.client.get(f"/v1/schedules/{sid}", headers=api.h("editor")).status_code
        == 404
    )
    schedules.run_due(api.db, None, now=utcnow() + timedelta(minutes=6))
    runs = api.client.get(f"/v1/schedules/{sid}/runs", headers=api.h("admin")).json()
    job_id = runs[0]["job_id"]
    assert job_id is not None
    # The job it started belongs to the project: hidden from the editor...
    assert (
        api.client.get(f"/v1/jobs/{job_id}", headers=api.h("editor")).status_code == 404
    )
    api.client.put(
        f"/v1/projects/{private['id']}/members/{_uid(api, 'editor')}",
        json={"role": "viewer"},
        headers=api.h("admin"),
    )
    # ...until the project is shared; reading it is not changing it.
    assert (
        api.client.get(f"/v1/jobs/{job_id}", headers=api.h("editor")).status_code == 200
    )
    assert (
        api.client.get(f"/v1/schedules/{sid}", headers=api.h("editor")).status_code
        == 200
    )
    paused = api.client.patch(
        f"/v1/schedules/{sid}", json={"enabled": False}, headers=api.h("editor")
    )
    assert paused.status_code == 403
