"""Cache keys: namespaced, versioned, collision-free.

A key is ``ballast:v<version>:<namespace>:<entity>[:<id>][:<params hash>]``. The version
is the application's (and, where known, the schema's): two colours of a blue-green
deployment never read each other's values. Tags name what a value depends on
(``project:<id>``, ``projects``) and are *not* versioned: a write in one colour busts
both colours' values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

ROOT = "ballast"


def params_hash(params: Mapping[str, Any]) -> str:
    """A short, stable hash of call parameters (order of keys does not matter)."""
    blob = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _part(value: object) -> str:
    text = str(value)
    if not text:
        raise ValueError("a cache key part may not be empty")
    # ':' separates parts; '%' escapes, so two different parts never read the same.
    return quote(text, safe="-_.~/")


@dataclass(frozen=True)
class CacheKeys:
    """Builds every key and tag of the cache (see the module docstring)."""

    version: str
    root: str = ROOT

    def key(
        self,
        namespace: str,
        entity: str,
        id: object | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        parts = [self.root, f"v{_part(self.version)}", _part(namespace), _part(entity)]
        if id is not None:
            parts.append(_part(id))
        if params:
            parts.append(params_hash(params))
        return ":".join(parts)

    def prefix(self, namespace: str | None = None) -> str:
        """What every key of `namespace` (None: of this version) starts with."""
        base = f"{self.root}:v{_part(self.version)}:"
        return base + (f"{_part(namespace)}:" if namespace else "")

    @staticmethod
    def tag(name: str, id: object | None = None) -> str:
        return _part(name) + (f":{_part(id)}" if id is not None else "")

    # The seed's named keys.
    def user_session(self, user_id: object) -> str:
        return self.key("users", "session", user_id)

    def form_data(self, form_id: str, user_id: object) -> str:
        return self.key("forms", "data", form_id, {"user": str(user_id)})

    def job_result(self, job_id: object) -> str:
        return self.key("jobs", "result", job_id)

    def computed(self, function_name: str, params: Mapping[str, Any]) -> str:
        return self.key("computed", function_name, None, params)

    def projects_list(self, user_id: object, params: Mapping[str, Any]) -> str:
        return self.key("projects", "list", user_id, params)

    def project(self, project_id: object) -> str:
        return self.key("projects", "one", project_id)

    def dataset_preview(self, dataset_id: object, rows: int) -> str:
        return self.key("datasets", "preview", dataset_id, {"rows": rows})

    def analysis(self, dataset_id: object, params: Mapping[str, Any]) -> str:
        return self.key("analysis", "result", dataset_id, params)
