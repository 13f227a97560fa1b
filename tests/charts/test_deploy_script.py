"""scripts/deploy.py: blue-green status / stage / promote / rollback against fake kubectl and helm.

No cluster can run here, so kubectl and helm are small scripts answering from JSON files; the
real helm command line is checked against the real chart with `helm template`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import CHART, ROOT, find, helm

DEPLOY = ROOT / "scripts" / "deploy.py"


def _deployment(name: str, replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 2},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 2,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
        },
    }


class FakeCluster:
    """Writes fake kubectl/helm executables reading their answers from a directory."""

    def __init__(self, root: Path, reachable: bool = True) -> None:
        self.root = root
        self.calls = root / "calls.log"
        self.values: dict[str, Any] = {"activeColor": "blue", "image": {"tag": "1.0.0"}}
        self.deployments: dict[str, dict[str, Any]] = {}
        py = sys.executable
        self.kubectl = self._script(
            "kubectl",
            f"""
import json, sys, pathlib
root = pathlib.Path({str(root)!r})
args = sys.argv[1:]
if args[0] == "version":
    if not {reachable!r}:
        print("The connection to the server localhost:8080 was refused", file=sys.stderr); sys.exit(1)
    print(json.dumps({{"clientVersion": {{}}, "serverVersion": {{"gitVersion": "v1.31.0"}}}})); sys.exit(0)
if args[:2] == ["get", "deployment"]:
    f = root / ("deploy-" + args[2] + ".json")
    if not f.exists():
        print("NotFound", file=sys.stderr); sys.exit(1)
    print(f.read_text()); sys.exit(0)
sys.exit(2)
""",
            py,
        )
        self.helm = self._script(
            "helm",
            f"""
import sys, pathlib
root = pathlib.Path({str(root)!r})
args = sys.argv[1:]
with open(root / "calls.log", "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:2] == ["get", "values"]:
    print((root / "values.json").read_text()); sys.exit(0)
if args[0] == "upgrade":
    sys.exit(0)
sys.exit(2)
""",
            py,
        )

    def _script(self, name: str, body: str, py: str) -> Path:
        path = self.root / name
        path.write_text(f"#!{py}\n{body}")
        path.chmod(0o755)
        return path

    def sync(self) -> None:
        (self.root / "values.json").write_text(json.dumps(self.values))
        for f in self.root.glob("deploy-*.json"):
            f.unlink()
        for name, doc in self.deployments.items():
            (self.root / f"deploy-{name}.json").write_text(json.dumps(doc))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.sync()
        cmd = [
            sys.executable,
            str(DEPLOY),
            *args,
            "--release",
            "ballast",
            "--namespace",
            "apps",
            "--helm",
            str(self.helm),
            "--kubectl",
            str(self.kubectl),
        ]
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=60
        )

    def upgrades(self) -> list[list[str]]:
        if not self.calls.exists():
            return []
        return [
            line.split()
            for line in self.calls.read_text().splitlines()
            if line.startswith("upgrade")
        ]


@pytest.fixture
def cluster(tmp_path: Path) -> FakeCluster:
    c = FakeCluster(tmp_path)
    c.deployments = {
        "ballast-api-blue": _deployment("ballast-api-blue", 2, 2),
        "ballast-ui-blue": _deployment("ballast-ui-blue", 2, 2),
    }
    return c


def test_promote_refuses_while_preview_is_not_ready(cluster: FakeCluster) -> None:
    cluster.deployments["ballast-api-green"] = _deployment("ballast-api-green", 2, 1)
    cluster.deployments["ballast-ui-green"] = _deployment("ballast-ui-green", 2, 2)
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert "refusing to promote: green is not ready (api: 1/2 ready" in proc.stderr
    assert "--set activeColor=green" in proc.stdout  # the command it would have run
    assert cluster.upgrades() == []


def test_promote_refuses_when_preview_is_not_deployed(cluster: FakeCluster) -> None:
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert "api: not deployed" in proc.stderr
    assert cluster.upgrades() == []


def test_promote_runs_and_prints_the_exact_upgrade(cluster: FakeCluster) -> None:
    cluster.deployments["ballast-api-green"] = _deployment("ballast-api-green", 2, 2)
    cluster.deployments["ballast-ui-green"] = _deployment("ballast-ui-green", 3, 3)
    proc = cluster.run("promote")
    assert proc.returncode == 0, proc.stderr
    (upgrade,) = cluster.upgrades()
    printed = next(line for line in proc.stdout.splitlines() if line.startswith("$ "))
    assert shlex.split(printed[2:])[1:] == upgrade
    assert upgrade[:6] == [
        "upgrade",
        "ballast",
        str(CHART),
        "--namespace",
        "apps",
        "--reuse-values",
    ]
    assert upgrade[-2:] == ["--set", "activeColor=green"]


def test_rollback_switches_back_and_dry_run_executes_nothing(
    cluster: FakeCluster,
) -> None:
    cluster.values["activeColor"] = "green"
    proc = cluster.run("rollback", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "--set activeColor=blue" in proc.stdout
    assert "dry run" in proc.stdout
    assert cluster.upgrades() == []


def test_no_cluster_is_a_clear_refusal(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, reachable=False)
    for command in ("promote", "rollback", "status"):
        proc = cluster.run(command)
        assert proc.returncode == 1
        assert "no Kubernetes cluster reachable" in proc.stderr
        assert "connection to the server" in proc.stderr
    assert cluster.upgrades() == []


def test_status_reports_both_colours(cluster: FakeCluster) -> None:
    cluster.values["colors"] = {"green": {"enabled": True, "tag": "1.1.0"}}
    cluster.deployments["ballast-api-green"] = _deployment("ballast-api-green", 1, 0)
    cluster.deployments["ballast-ui-green"] = _deployment("ballast-ui-green", 1, 1)
    proc = cluster.run("status")
    assert proc.returncode == 0, proc.stderr
    active, preview = proc.stdout.splitlines()
    assert active.split()[:5] == ["active", "blue", "tag", "1.0.0", "ready"]
    assert preview.split()[:5] == ["preview", "green", "tag", "1.1.0", "NOT"]


def test_stage_pins_the_active_colour_and_the_command_renders(
    cluster: FakeCluster,
) -> None:
    proc = cluster.run("stage", "--tag", "1.1.0")
    assert proc.returncode == 0, proc.stderr
    (upgrade,) = cluster.upgrades()
    sets = [upgrade[i + 1] for i, a in enumerate(upgrade) if a.startswith("--set")]
    assert sets == [
        "image.tag=1.1.0",
        "colors.blue.tag=1.0.0",
        "colors.green.enabled=true",
        "colors.green.tag=1.1.0",
    ]
    # The same --set flags on top of the release's values render what stage promises.
    args = ["template", "ballast", str(CHART), "--set", "image.tag=1.0.0"]
    for i, a in enumerate(upgrade):
        if a.startswith("--set"):
            args += [a, upgrade[i + 1]]
    objs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    images = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in find(objs, "Deployment")
    }
    assert images["ballast-api-blue"].endswith(":1.0.0")
    assert images["ballast-api-green"].endswith(":1.1.0")
    assert find(objs, "Job")[0]["spec"]["template"]["spec"]["containers"][0][
        "image"
    ].endswith(":1.1.0")
    svc = next(
        s for s in find(objs, "Service") if s["metadata"]["name"] == "ballast-ui"
    )
    assert svc["spec"]["selector"]["ballast.io/color"] == "blue"


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


def test_helm_waits_longer_than_the_migration_may_take() -> None:
    """Every documented `helm upgrade --wait` (and the script's) outlasts the migration
    hook's deadline plus a rollout, so helm never gives up on a migration still running.
    """
    deadline = yaml.safe_load((CHART / "values.yaml").read_text())["migrations"][
        "activeDeadlineSeconds"
    ]
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import deploy  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    assert _seconds(deploy.HELM_TIMEOUT) >= deadline + 300
    readme = (CHART / "README.md").read_text()
    waits = [
        line
        for line in readme.splitlines()
        if "helm upgrade" in line and "--wait" in line
    ]
    assert waits
    for line in waits:
        assert "--timeout" in line, line
        timeout = line.split("--timeout", 1)[1].split()[0]
        assert _seconds(timeout) >= deadline + 300, line
