"""Generate charts/ballast/values.schema.json from values.yaml and its comments.

Every key in values.yaml carries a comment line; that comment becomes the key's
`description`. Comment lines starting with `@` are hints for the schema:

    # @enum a b c          allowed values
    # @type number         type for a value the default does not show (e.g. null)
    # @minimum N / @maximum N
    # @items string|object item type of a list
    # @freeform [string]   an object whose keys are the user's (values of that type)

    uv run python scripts/chart_schema.py write   # regenerate
    uv run python scripts/chart_schema.py check   # exit 1 when the file is stale
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "ballast"
KEY_RE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")

cli = typer.Typer(no_args_is_help=True, add_completion=False)


@dataclass
class KeyDoc:
    """What the comment lines above one key say."""

    description: str = ""
    hints: dict[str, str] = field(default_factory=dict)


def parse_comments(text: str) -> dict[tuple[str, ...], KeyDoc]:
    """Map each key path in a values file to the comment block right above it."""
    docs: dict[tuple[str, ...], KeyDoc] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = KEY_RE.match(line)
        if not match:
            if not stripped:
                pending = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        doc = KeyDoc()
        for comment in pending:
            if comment.startswith("@"):
                name, _, arg = comment[1:].partition(" ")
                doc.hints[name] = arg.strip()
            else:
                doc.description = f"{doc.description} {comment}".strip()
        docs[tuple(key for _, key in stack)] = doc
        pending = []
    return docs


def _json_type(name: str) -> dict[str, Any]:
    types = name.split("|")
    return {"type": types[0] if len(types) == 1 else types}


def node_schema(
    value: Any, path: tuple[str, ...], docs: dict[tuple[str, ...], KeyDoc]
) -> dict[str, Any]:
    """The schema of one value (recursing into mappings)."""
    doc = docs.get(path, KeyDoc())
    if path and not doc.description:
        raise ValueError(f"values.yaml key {'.'.join(path)} has no comment")
    schema: dict[str, Any] = {"description": doc.description} if path else {}
    hints = doc.hints
    if "freeform" in hints:
        schema["type"] = "object"
        if hints["freeform"]:
            schema["additionalProperties"] = _json_type(hints["freeform"])
    elif isinstance(value, dict):
        schema["type"] = "object"
        schema["additionalProperties"] = False
        schema["properties"] = {
            key: node_schema(child, (*path, key), docs) for key, child in value.items()
        }
    elif isinstance(value, list):
        schema["type"] = "array"
        if "items" in hints:
            schema["items"] = _json_type(hints["items"])
    elif "type" in hints:
        schema.update(_json_type(hints["type"]))
    elif isinstance(value, bool):
        schema["type"] = "boolean"
    elif isinstance(value, int):
        schema["type"] = "integer"
    elif isinstance(value, float):
        schema["type"] = "number"
    elif isinstance(value, str):
        schema["type"] = "string"
    else:
        raise ValueError(f"values.yaml key {'.'.join(path)}: add a `# @type` hint")
    if "enum" in hints:
        schema["enum"] = hints["enum"].split()
    for bound in ("minimum", "maximum"):
        if bound in hints:
            schema[bound] = int(hints[bound])
    if path and not isinstance(value, dict):
        schema["default"] = value
    return schema


def build_schema(chart: Path = CHART) -> dict[str, Any]:
    """The values.schema.json document for `chart`."""
    text = (chart / "values.yaml").read_text(encoding="utf-8")
    schema = node_schema(yaml.safe_load(text), (), parse_comments(text))
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Ballast chart values",
        **schema,
    }


def render(chart: Path = CHART) -> str:
    return json.dumps(build_schema(chart), indent=2, ensure_ascii=False) + "\n"


@cli.command()
def write() -> None:
    """Regenerate values.schema.json."""
    (CHART / "values.schema.json").write_text(render(), encoding="utf-8")
    print(f"wrote {CHART / 'values.schema.json'}")


@cli.command()
def check() -> None:
    """Fail when values.schema.json is not what values.yaml generates."""
    current = (CHART / "values.schema.json").read_text(encoding="utf-8")
    if current != render():
        print(
            "values.schema.json is stale: run `uv run python scripts/chart_schema.py write`",
            file=sys.stderr,
        )
        raise typer.Exit(1)
    print("values.schema.json is up to date")


if __name__ == "__main__":
    cli()
