"""The UI's client and the api speak one contract: `ballast_common.contracts`.

Every route the UI calls declares its request body and response with the contract's
classes, and the UI's client parses every answer with the class the api declares for
that route (or a subclass that only adds fields with defaults, e.g. a project read as a
write result). The client declares no model of its own, so the two cannot drift apart;
these tests fail when someone gives either side a model of its own again. (Routes only
other clients call, e.g. inbound webhooks, may keep their models in the api.)
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from ballast_api.main import create_app
from ballast_common import contracts
from ballast_common.contracts import (
    DraftBatchResult,
    DraftResult,
    Page,
    ProjectRead,
    ProjectWriteResult,
    UserAdminRead,
)
from ballast_ui import client
from ballast_ui.client import ApiClient

CONTRACTS = contracts.__name__

# Each method of the client that reads a model -> the api route it calls.
CALLS: dict[str, tuple[str, str]] = {
    "login": ("POST", "/v1/sessions"),
    "sign_in_methods": ("GET", "/v1/sessions/methods"),
    "oidc_sign_in": ("POST", "/v1/sessions/oidc"),
    "proxy_sign_in": ("POST", "/v1/sessions/proxy"),
    "me": ("GET", "/v1/sessions/me"),
    "create_handoff": ("POST", "/v1/sessions/handoffs"),
    "put_drafts": ("PUT", "/v1/drafts"),
    "get_drafts": ("GET", "/v1/drafts"),
    "get_form": ("GET", "/v1/forms/{form_id}"),
    "save_form": ("PUT", "/v1/forms/{form_id}"),
    "list_projects": ("GET", "/v1/projects"),
    "get_project": ("GET", "/v1/projects/{project_id}"),
    "create_project": ("POST", "/v1/projects"),
    "update_project": ("PATCH", "/v1/projects/{project_id}"),
    "list_members": ("GET", "/v1/projects/{project_id}/members"),
    "add_member": ("POST", "/v1/projects/{project_id}/members"),
    "list_audit": ("GET", "/v1/audit"),
    "list_users": ("GET", "/v1/users"),
    "create_user": ("POST", "/v1/users"),
    "update_user": ("PATCH", "/v1/users/{user_id}"),
    "get_preferences": ("GET", "/v1/users/me/preferences"),
    "put_preferences": ("PUT", "/v1/users/me/preferences"),
    "list_tasks": ("GET", "/v1/jobs/tasks"),
    "create_job": ("POST", "/v1/jobs"),
    "list_jobs": ("GET", "/v1/jobs"),
    "get_job": ("GET", "/v1/jobs/{job_id}"),
    "get_job_result": ("GET", "/v1/jobs/{job_id}/result"),
    "cancel_job": ("POST", "/v1/jobs/{job_id}/cancel"),
    "retry_job": ("POST", "/v1/jobs/{job_id}/retry"),
    "import_dataset": ("POST", "/v1/datasets"),
    "list_datasets": ("GET", "/v1/datasets"),
    "get_dataset": ("GET", "/v1/datasets/{dataset_id}"),
    "create_upload": ("POST", "/v1/uploads"),
    "get_upload": ("GET", "/v1/uploads/{upload_id}"),
    "sign_upload_parts": ("POST", "/v1/uploads/{upload_id}/parts"),
    "complete_upload": ("POST", "/v1/uploads/{upload_id}/complete"),
    "list_subscriptions": ("GET", "/v1/webhooks/subscriptions"),
    "create_subscription": ("POST", "/v1/webhooks/subscriptions"),
    "list_deliveries": ("GET", "/v1/webhooks/deliveries"),
    "redeliver": ("POST", "/v1/webhooks/deliveries/{delivery_id}/redeliver"),
    "list_schedules": ("GET", "/v1/schedules"),
    "create_schedule": ("POST", "/v1/schedules"),
    "set_schedule_enabled": ("PATCH", "/v1/schedules/{schedule_id}"),
}
# The client's other calls: they send a body or read no model.
OTHER_CALLS: dict[str, tuple[str, str]] = {
    "logout": ("DELETE", "/v1/sessions/current"),
    "logout_everywhere": ("DELETE", "/v1/sessions"),
    "end_user_sessions": ("DELETE", "/v1/users/{user_id}/sessions"),
    "delete_drafts": ("DELETE", "/v1/drafts"),
    "delete_project": ("DELETE", "/v1/projects/{project_id}"),
    "remove_member": ("DELETE", "/v1/projects/{project_id}/members/{user_id}"),
    "post_events": ("POST", "/v1/events"),
    "jobs_summary": ("GET", "/v1/jobs/summary"),
    "delete_subscription": ("DELETE", "/v1/webhooks/subscriptions/{subscription_id}"),
    "delete_schedule": ("DELETE", "/v1/schedules/{schedule_id}"),
    "abort_upload": ("DELETE", "/v1/uploads/{upload_id}"),
}
# The client's transport, not calls of one route (`download` fetches the export files
# of several routes: bytes, no model).
TRANSPORT = {"request", "with_token", "download"}


def _origin(model: type[BaseModel]) -> type[BaseModel]:
    """`Page` for `Page[X]` (pydantic makes a class per parametrization)."""
    origin = model.__pydantic_generic_metadata__["origin"]
    return origin or model


def models_in(annotation: Any) -> set[type[BaseModel]]:
    """The model classes an annotation reads: generic arguments and fields included."""
    found: set[type[BaseModel]] = set()

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in found:
                return
            found.add(_origin(tp))
            for arg in tp.__pydantic_generic_metadata__["args"]:
                walk(arg)
            for field in tp.model_fields.values():
                walk(field.annotation)
            return
        for arg in typing.get_args(tp):
            walk(arg)

    walk(annotation)
    return found


def unread(ui: set[type[BaseModel]], api: set[type[BaseModel]]) -> set[str]:
    """Models the UI reads that are not what the api sends.

    A UI model may be a subclass of the api's one whose extra fields all have defaults
    (a `ProjectRead` parses as a `ProjectWriteResult` without an overwrite).
    """

    def fits(model: type[BaseModel]) -> bool:
        if model in api:
            return True
        return any(
            issubclass(model, sent)
            and not any(
                model.model_fields[name].is_required()
                for name in set(model.model_fields) - set(sent.model_fields)
            )
            for sent in api
        )

    return {m.__name__ for m in ui if not fits(m)}


def foreign(models: set[type[BaseModel]]) -> set[str]:
    """Models not defined in `ballast_common.contracts`."""
    return {
        f"{m.__module__}.{m.__qualname__}"
        for m in models
        if not _origin(m).__module__.startswith(CONTRACTS + ".")
    }


def _api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute, Any]]:
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in sorted(context.methods or ()):
                yield method, context.path_format, route, context.dependant


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app()


@pytest.fixture(scope="module")
def responses(app: FastAPI) -> dict[tuple[str, str], Any]:
    return {(m, p): route.response_model for m, p, route, _ in _api_routes(app)}


@pytest.fixture(scope="module")
def bodies(app: FastAPI) -> dict[tuple[str, str], set[type[BaseModel]]]:
    return {
        (m, p): {
            model
            for param in dependant.body_params
            for model in models_in(param.field_info.annotation)
        }
        for m, p, _, dependant in _api_routes(app)
    }


def _reads(method: str) -> set[type[BaseModel]]:
    hints = typing.get_type_hints(getattr(ApiClient, method))
    return models_in(hints["return"])


def test_the_client_declares_no_model_of_its_own() -> None:
    models = {
        value
        for value in vars(client).values()
        if isinstance(value, type) and issubclass(value, BaseModel)
    }
    assert models, "the client re-exports the contract's models"
    assert foreign(models) == set()


@pytest.mark.parametrize("method", sorted(CALLS))
def test_the_client_reads_what_the_api_sends(
    responses: dict[tuple[str, str], Any], method: str
) -> None:
    ui = _reads(method)
    api = models_in(responses[CALLS[method]])
    assert ui, f"{method} reads no model"
    assert foreign(ui) == set()
    assert unread(ui, api) == set()


def test_every_call_of_the_client_is_checked() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(ApiClient, inspect.isfunction)
        if not name.startswith("_")
    }
    reading = {name for name in public - TRANSPORT if _reads(name)}
    assert reading == set(CALLS)
    assert public - TRANSPORT - reading == set(OTHER_CALLS)


@pytest.mark.parametrize("method", sorted({**CALLS, **OTHER_CALLS}))
def test_every_route_the_ui_calls_speaks_the_contract(
    responses: dict[tuple[str, str], Any],
    bodies: dict[tuple[str, str], set[type[BaseModel]]],
    method: str,
) -> None:
    route = {**CALLS, **OTHER_CALLS}[method]
    assert route in responses, f"{method}: the api has no route {route}"
    assert foreign(models_in(responses[route]) | bodies[route]) == set()


def test_the_contract_names_every_schema_of_those_routes(app: FastAPI) -> None:
    # The OpenAPI schemas are generated from the contract's classes, under their names.
    names = set(app.openapi()["components"]["schemas"])
    assert (
        set(contracts.__all__)
        - {
            "RETRYABLE",
            "TERMINAL",
            "DatasetFormat",
            "Capability",
            "Page",
            "Paged",
        }
        <= names
    )


def test_a_model_of_its_own_is_found() -> None:
    class Project(BaseModel):  # what the client used to declare
        id: str

    assert foreign({Project, ProjectRead}) == {f"{__name__}.{Project.__qualname__}"}
    assert foreign(models_in(Page[Project])) == {f"{__name__}.{Project.__qualname__}"}


def test_a_model_the_api_does_not_send_is_found() -> None:
    class Stricter(ProjectRead):
        archived: bool  # required, never sent

    api = models_in(Page[ProjectRead])
    assert unread(models_in(Page[ProjectWriteResult]), api) == set()
    assert unread(models_in(Page[Stricter]), api) == {"Stricter"}
    assert unread({UserAdminRead}, api) == {"UserAdminRead"}
    # A batch answer is read item by item.
    assert unread(models_in(list[DraftResult]), models_in(DraftBatchResult)) == set()
    assert models_in(types.NoneType | DraftResult) == {DraftResult}
