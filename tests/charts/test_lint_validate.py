"""helm lint --strict, the values schema, and kubernetes-validate --strict on three minors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.charts.conftest import CHART, ROOT, VALUE_SETS, helm, render_text

# Oldest supported (Chart.yaml kubeVersion >= 1.27 allows it), a middle one, the newest here.
KUBE_VERSIONS = ["1.28.0", "1.31.0", "1.34.0"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(name: str) -> None:
    args = ["lint", "--strict", str(CHART), "--set", "colors.green.enabled=true"]
    for path in VALUE_SETS[name]:
        args += ["-f", str(path)]
    proc = helm(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_schema_is_generated_from_values() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_schema.py"), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _walk(schema: dict[str, object], path: str = "") -> list[str]:
    missing = [] if (not path or schema.get("description")) else [path]
    props = schema.get("properties")
    if isinstance(props, dict):
        for key, child in props.items():
            missing += _walk(child, f"{path}.{key}".lstrip("."))
    return missing


def test_every_value_has_a_description_and_closed_objects() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _walk(schema) == []
    assert schema["additionalProperties"] is False
    assert schema["properties"]["api"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("activeColor", "purple"),
        ("bogus", "1"),
        ("api.replicas", "-1"),
        ("migrations.mode", "helm"),
    ],
)
def test_schema_rejects_bad_values(key: str, value: str) -> None:
    proc = helm("template", "rel", str(CHART), "--set", f"{key}={value}", check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower()


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", ["default", "production", "argocd"])
def test_manifests_validate_strictly(
    name: str, kube_version: str, tmp_path: Path
) -> None:
    text = render_text(
        VALUE_SETS[name], {"colors.green.enabled": "true"}, kube_version=kube_version
    )
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "--no-warn",
            "-k",
            kube_version,
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "passed for resource deployment/rel-ballast-api-green" in out
    assert "ERROR" not in out


def test_validation_can_fail(tmp_path: Path) -> None:
    """The validator rejects an unknown field: the check above is not a rubber stamp."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {ports: [{port: 80}], selectr: {a: b}}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "-k",
            KUBE_VERSIONS[0],
            str(bad),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
