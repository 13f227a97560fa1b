"""The Tiltfile parses (starlark with stubs of Tilt's API) and its calls fit the chart and k8s/."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import starlark as sl
import yaml

from tests.charts.conftest import ROOT, find, helm, require_tool


@dataclass
class Tilt:
    """Records every Tilt API call the Tiltfile makes."""

    calls: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = field(
        default_factory=dict
    )

    def stub(
        self, name: str, result: Callable[..., Any] | None = None
    ) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.setdefault(name, []).append((args, kwargs))
            return result(*args, **kwargs) if result else None

        return record

    def kwargs(self, name: str) -> list[dict[str, Any]]:
        return [kw for _, kw in self.calls.get(name, [])]


API = [
    "allow_k8s_contexts",
    "k8s_yaml",
    "k8s_resource",
    "docker_build",
    "local_resource",
]


def run_tiltfile(path: Path = ROOT / "Tiltfile") -> Tilt:
    tilt = Tilt()
    module = sl.Module()
    for name in API:
        module.add_callable(name, tilt.stub(name))
    module.add_callable("kustomize", tilt.stub("kustomize", lambda p: f"kustomize:{p}"))
    module.add_callable("helm", tilt.stub("helm", lambda p, **_: f"helm:{p}"))
    module.add_callable("sync", tilt.stub("sync", lambda a, b: ("sync", a, b)))
    module.add_callable("run", tilt.stub("run", lambda c, **_: ("run", c)))
    module.add_callable(
        "fall_back_on", tilt.stub("fall_back_on", lambda f: ("fall_back_on", f))
    )
    module.add_callable(
        "port_forward", tilt.stub("port_forward", lambda a, b, **_: (a, b))
    )
    glob = sl.Globals.standard()
    # Constants Tilt predefines.
    prelude = sl.parse("prelude", "TRIGGER_MODE_MANUAL = 1\nTRIGGER_MODE_AUTO = 0\n")
    sl.eval(module, prelude, glob)
    # Tilt's dialect allows top-level for/if (the extended dialect).
    dialect = sl.Dialect.extended()
    sl.eval(
        module, sl.parse("Tiltfile", path.read_text(encoding="utf-8"), dialect), glob
    )
    return tilt


@pytest.fixture(scope="module")
def tilt() -> Tilt:
    return run_tiltfile()


def test_tiltfile_syntax_errors_are_caught(tmp_path: Path) -> None:
    bad = tmp_path / "Tiltfile"
    bad.write_text("docker_build('x', '.'\n")
    with pytest.raises(sl.StarlarkError):
        run_tiltfile(bad)


def test_one_docker_build_per_service_with_live_update(tilt: Tilt) -> None:
    builds = {args[0]: kw for args, kw in tilt.calls["docker_build"]}
    assert sorted(builds) == [
        "ballast-api",
        "ballast-backup",
        "ballast-jobs",
        "ballast-ui",
    ]
    for ref, kw in builds.items():
        svc = ref.removeprefix("ballast-")
        assert kw["target"] == svc
        assert f"services/{svc}" in kw["only"]
        assert "uv.lock" in kw["only"]
        syncs = [step for step in kw["live_update"] if step[0] == "sync"]
        assert syncs
        assert all((ROOT / step[1]).is_dir() for step in syncs), syncs
        assert all(step[2].startswith(f"/opt/venvs/{svc}/") for step in syncs)


def test_dockerfile_targets_exist(tilt: Tilt) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for kw in tilt.kwargs("docker_build"):
        assert f" AS {kw['target']}\n" in dockerfile


def _helm_objects(tilt: Tilt) -> list[dict[str, Any]]:
    ((args, kw),) = tilt.calls["helm"]
    assert args[0] == "charts/ballast"
    args_ = [
        "template",
        kw["name"],
        str(ROOT / args[0]),
        "--namespace",
        kw["namespace"],
    ]
    for path in kw["values"]:
        args_ += ["-f", str(ROOT / path)]
    for item in kw.get("set", []):
        args_ += ["--set", item]
    return [d for d in yaml.safe_load_all(helm(*args_).stdout) if d]


def _kustomize_objects(tilt: Tilt) -> list[dict[str, Any]]:
    ((args, _),) = tilt.calls["kustomize"]
    kubectl = require_tool("kubectl", "install kubectl (Debian/Kubernetes apt repo)")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / args[0])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_resources_name_real_workloads_and_deps_exist(tilt: Tilt) -> None:
    objs = _helm_objects(tilt) + _kustomize_objects(tilt)
    workloads = {
        o["metadata"]["name"]
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")
    }
    names: set[str] = set()
    for args, kw in tilt.calls["k8s_resource"]:
        assert args[0] in workloads, args[0]
        names.add(kw.get("new_name", args[0]))
    for kw in tilt.kwargs("k8s_resource"):
        for dep in kw.get("resource_deps", []):
            assert dep in names, dep


def test_images_in_the_chart_are_the_ones_tilt_builds(tilt: Tilt) -> None:
    built = {args[0] for args, _ in tilt.calls["docker_build"]}
    objs = _helm_objects(tilt)
    specs = [o["spec"]["template"]["spec"] for o in find(objs, "Deployment")]
    specs += [o["spec"]["template"]["spec"] for o in find(objs, "Job")]
    specs += [
        o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for o in find(objs, "CronJob")
    ]
    images = {
        c["image"].split(":")[0]
        for spec in specs
        for c in [*spec.get("initContainers", []), *spec["containers"]]
    }
    # every service image runs somewhere in the dev stack
    assert images == built


def test_port_forwards_and_dev_values(tilt: Tilt) -> None:
    forwards = {
        tuple(pf)
        for kw in tilt.kwargs("k8s_resource")
        for pf in kw.get("port_forwards", [])
    }
    assert forwards == {(8000, 8000), (8501, 8501), (9101, 9101), (9102, 9102)}
    ((_, kw),) = tilt.calls["helm"]
    assert kw["values"] == ["charts/ballast/values-dev.yaml"]
    assert all(kw.get("auto_init") is False for kw in tilt.kwargs("local_resource"))


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kustomize_renders_every_overlay(overlay: str, tmp_path: Path) -> None:
    kubectl = require_tool("kubectl", "install kubectl (Debian/Kubernetes apt repo)")
    proc = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    objs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "NetworkPolicy"} <= kinds
    # Prerequisites only: no Ballast workload is defined twice (the chart owns those).
    assert not [
        o
        for o in objs
        if o["metadata"]["name"].startswith("ballast-")
        and o["kind"] in ("Deployment", "Job")
    ]
    # Schema-valid (CRDs such as the ClusterIssuer are skipped by the validator).
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(proc.stdout)
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "--no-warn",
            "-k",
            "1.31.0",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    if overlay == "dev":
        # The dev Secret holds every key the chart's dev values read (backups need the S3 key).
        (secret,) = [o for o in objs if o["kind"] == "Secret"]
        assert secret["metadata"]["name"] == "ballast-dev"
        assert {"database-password", "secret-key", "s3-secret-access-key"} <= set(
            secret["data"]
        )
        assert {o["metadata"]["name"] for o in objs if o["kind"] == "StatefulSet"} == {
            "postgres",
            "redis",
            "s3",
        }
        assert {
            o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"
        } == {"ballast-dev"}
    else:
        assert "ClusterIssuer" in kinds
