"""The UI's client models and the api's responses are one contract.

The UI declares the models it reads (``ballast_ui.client``: it may not import the api);
this test holds them against the api's own OpenAPI document, so a field the api renames,
drops, makes optional or changes the type of fails here, not in a browser. A field the
api adds that the UI does not read must be listed in ``UNREAD`` (a decision, not an
accident).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from ballast_api.main import create_app
from ballast_ui import client

# UI model -> the api schema it is parsed from.
PAIRS: dict[str, str] = {
    "User": "UserRead",
    "Session": "SessionRead",
    "Draft": "DraftRead",
    "DraftResult": "DraftResult",
    "Form": "FormRead",
    "Project": "ProjectWriteResult",
    "AuditEntry": "AuditRead",
    "AdminUser": "UserAdminRead",
    "Preferences": "Preferences",
    "Job": "JobView",
    "JobResult": "JobResultRead",
    "TaskInfo": "TaskInfo",
    "Dataset": "DatasetRead",
    "DatasetDetail": "DatasetDetail",
    "DatasetImport": "DatasetImport",
}
# Fields the api sends that the UI does not read, per api schema.
UNREAD: dict[str, set[str]] = {
    "AuditRead": {"write_id"},
    "JobView": {"args", "depends_on", "retry_delay", "scheduled_at", "timeout"},
    "DatasetRead": {"sha256"},
    "DatasetDetail": {"sha256"},
}
# Schemas the UI reads as something looser: an enum as its string, a nested object as a
# plain mapping.
LOOSER: dict[str, str] = {"ref:JobStatus": "string", "ref:FormConflict": "object"}


def _kind(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return "|".join(sorted({_kind(s) for s in schema["anyOf"]}))
    if "$ref" in schema:
        return "ref:" + schema["$ref"].rsplit("/", 1)[-1]
    if "allOf" in schema:
        return _kind(schema["allOf"][0])
    kind = str(schema.get("type", "any"))
    return (
        kind
        if kind == "array"
        else kind + (f":{schema['format']}" if "format" in schema else "")
    )


def _api_kind(kind: str) -> str:
    """The api's kind in the UI's terms (refs renamed, looser reads allowed)."""
    names = {f"ref:{api}": f"ref:{ui}" for ui, api in PAIRS.items()}
    return "|".join(
        sorted(names.get(part, LOOSER.get(part, part)) for part in kind.split("|"))
    )


def differences(
    ui_model: type[BaseModel], api_schema: dict[str, Any], unread: set[str]
) -> list[str]:
    """What breaks between a UI model and the api schema it is parsed from."""
    ui = ui_model.model_json_schema(mode="validation")
    ui_props: dict[str, Any] = ui.get("properties", {})
    api_props: dict[str, Any] = api_schema.get("properties", {})
    api_required = set(api_schema.get("required", []))
    found: list[str] = []
    for name in sorted(set(ui_props) - set(api_props)):
        found.append(f"{name}: the UI reads it, the api does not send it")
    for name in sorted(set(api_props) - set(ui_props) - unread):
        found.append(f"{name}: the api sends it, the UI does not read it")
    for name in sorted(set(ui.get("required", [])) & set(api_props) - api_required):
        found.append(f"{name}: required by the UI, optional in the api")
    for name in sorted(set(ui_props) & set(api_props)):
        ui_kind, api_kind = _kind(ui_props[name]), _api_kind(_kind(api_props[name]))
        if ui_kind != api_kind:
            found.append(f"{name}: the UI reads {ui_kind}, the api sends {api_kind}")
    return found


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    components: dict[str, Any] = create_app().openapi()["components"]["schemas"]
    return components


@pytest.mark.parametrize(("ui_name", "api_name"), sorted(PAIRS.items()))
def test_the_ui_reads_what_the_api_sends(
    schemas: dict[str, Any], ui_name: str, api_name: str
) -> None:
    model = getattr(client, ui_name)
    assert differences(model, schemas[api_name], UNREAD.get(api_name, set())) == []


def test_every_response_model_of_the_client_is_checked() -> None:
    declared = {
        name
        for name, value in vars(client).items()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == client.__name__
        and not name.startswith("_")
    }
    # Request bodies and the generic page wrapper are not response schemas of their own.
    assert declared - set(PAIRS) <= {"DraftItem", "PageOf"}


def test_a_divergence_is_found(schemas: dict[str, Any]) -> None:
    api = dict(schemas["ProjectWriteResult"])
    props = dict(api["properties"])
    props["title"] = props.pop("name")  # renamed in the api
    props["priority"] = {"type": "string"}  # type changed
    api["properties"] = props
    api["required"] = [r for r in api.get("required", []) if r != "version"]
    found = differences(client.Project, api, set())
    assert "name: the UI reads it, the api does not send it" in found
    assert "title: the api sends it, the UI does not read it" in found
    assert "priority: the UI reads integer, the api sends string" in found
    assert "version: required by the UI, optional in the api" in found
