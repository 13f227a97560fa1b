"""Blue-green operations for the Ballast Helm release.

    uv run python scripts/deploy.py status   [--release ballast --namespace ballast]
    uv run python scripts/deploy.py stage    --tag 0.2.0     # next release on the idle colour
    uv run python scripts/deploy.py promote                  # route traffic to the preview colour
    uv run python scripts/deploy.py rollback                 # route traffic back to the other colour
    uv run python scripts/deploy.py retire                   # scale the idle colour away

Every command prints the exact `helm upgrade` it runs (`--dry-run`: print only). promote and
rollback refuse unless the colour they switch to is deployed and every one of its pods is
ready, checked with kubectl; without a reachable cluster they refuse and say so.
The runbook is charts/ballast/README.md.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "ballast"
COLORS = ("blue", "green")
COMPONENTS = ("api", "ui")

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


class DeployError(Exception):
    """A refusal or failure with a one-line reason."""


@dataclass(frozen=True)
class Target:
    release: str
    namespace: str
    chart: Path
    helm: str
    kubectl: str
    fullname: str

    @property
    def base(self) -> list[str]:
        return [
            self.helm,
            "upgrade",
            self.release,
            str(self.chart),
            "--namespace",
            self.namespace,
        ]


@dataclass(frozen=True)
class ColorState:
    """One colour's Deployments as kubectl sees them."""

    color: str
    deployed: bool
    ready: bool
    detail: str


def other(color: str) -> str:
    return "green" if color == "blue" else "blue"


def fullname(release: str, chart_name: str = "ballast") -> str:
    """The chart's ballast.fullname for a release (no overrides)."""
    name = release if chart_name in release else f"{release}-{chart_name}"
    return name[:63].rstrip("-")


# How long helm waits: the migration hook may take its whole deadline
# (migrations.activeDeadlineSeconds, 600 s by default) before the rollout even starts.
HELM_TIMEOUT = "15m"


def upgrade_command(target: Target, sets: dict[str, str]) -> list[str]:
    """`helm upgrade` keeping every other value (--reuse-values), waiting for the rollout."""
    cmd = [*target.base, "--reuse-values", "--wait", "--timeout", HELM_TIMEOUT]
    for key, value in sets.items():
        cmd += ["--set-string" if key.endswith(".tag") else "--set", f"{key}={value}"]
    return cmd


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise DeployError(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{shlex.join(cmd)} timed out") from None


def require_cluster(target: Target) -> None:
    """Raise unless kubectl reaches an API server."""
    try:
        proc = _run(
            [target.kubectl, "version", "--request-timeout=5s", "-o", "json"],
            timeout=15,
        )
    except DeployError as exc:
        raise DeployError(f"no Kubernetes cluster reachable: {exc}") from None
    if proc.returncode != 0 or '"serverVersion"' not in proc.stdout:
        reason = (proc.stderr.strip().splitlines() or ["kubectl version failed"])[-1]
        raise DeployError(f"no Kubernetes cluster reachable ({reason})")


def release_values(target: Target) -> dict[str, Any]:
    """The release's user-supplied values (`helm get values`)."""
    proc = _run(
        [
            target.helm,
            "get",
            "values",
            target.release,
            "-n",
            target.namespace,
            "-o",
            "json",
        ]
    )
    if proc.returncode != 0:
        raise DeployError(
            f"cannot read release {target.release}: {proc.stderr.strip()}"
        )
    return json.loads(proc.stdout or "{}") or {}


def active_color(values: dict[str, Any]) -> str:
    color = values.get("activeColor", "blue")
    if color not in COLORS:
        raise DeployError(f"activeColor is {color!r}, not blue or green")
    return str(color)


def color_tag(values: dict[str, Any], color: str, app_version: str) -> str:
    """The image tag a colour runs: its own tag, else image.tag, else the chart's appVersion."""
    own = values.get("colors", {}).get(color, {}).get("tag") or ""
    return str(own or values.get("image", {}).get("tag") or app_version)


def deployment_ready(doc: dict[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment finished rolling out with every replica ready."""
    spec, status = doc.get("spec", {}), doc.get("status", {})
    want = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    current = status.get("observedGeneration", 0) >= doc["metadata"].get(
        "generation", 0
    )
    ok = want > 0 and ready == want and updated == want and current
    return ok, f"{ready}/{want} ready, {updated} updated"


def color_state(target: Target, color: str) -> ColorState:
    details, ready, deployed = [], True, True
    for component in COMPONENTS:
        name = f"{target.fullname}-{component}-{color}"
        proc = _run(
            [
                target.kubectl,
                "get",
                "deployment",
                name,
                "-n",
                target.namespace,
                "-o",
                "json",
            ]
        )
        if proc.returncode != 0:
            deployed, ready = False, False
            details.append(f"{component}: not deployed")
            continue
        ok, detail = deployment_ready(json.loads(proc.stdout))
        ready = ready and ok
        details.append(f"{component}: {detail}")
    return ColorState(color, deployed, ready, "; ".join(details))


def execute(cmd: list[str], dry_run: bool) -> None:
    print(f"$ {shlex.join(cmd)}")
    if dry_run:
        print("(dry run: not executed)")
        return
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise DeployError(f"helm upgrade failed with exit code {proc.returncode}")


def switch(target: Target, *, dry_run: bool, verb: str) -> None:
    """Point the Services at the other colour, after checking every pod of it is ready."""
    try:
        require_cluster(target)
    except DeployError as exc:
        example = upgrade_command(target, {"activeColor": "<the other colour>"})
        print(f"would run: {shlex.join(example)}")
        raise DeployError(
            f"refusing to {verb}: {exc}; cannot check the colour is ready"
        ) from None
    color = other(active_color(release_values(target)))
    cmd = upgrade_command(target, {"activeColor": color})
    state = color_state(target, color)
    if not state.ready:
        print(f"would run: {shlex.join(cmd)}")
        raise DeployError(f"refusing to {verb}: {color} is not ready ({state.detail})")
    print(f"{color} is ready ({state.detail})")
    execute(cmd, dry_run)


Release = Annotated[str, typer.Option(help="Helm release name.")]
Namespace = Annotated[str, typer.Option(help="Kubernetes namespace of the release.")]
Chart = Annotated[Path, typer.Option(help="Chart directory (or packaged chart).")]
Helm = Annotated[str, typer.Option(help="helm binary.")]
Kubectl = Annotated[str, typer.Option(help="kubectl binary.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the helm command only.")]


def _target(
    release: str, namespace: str, chart: Path, helm: str, kubectl: str
) -> Target:
    return Target(release, namespace, chart, helm, kubectl, fullname(release))


def _fail(exc: DeployError) -> typer.Exit:
    print(f"error: {exc}", file=sys.stderr)
    return typer.Exit(1)


def _app_version(chart: Path) -> str:
    for line in (chart / "Chart.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    return ""


@cli.command()
def status(
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
) -> None:
    """Show the active and preview colours, their image tags and readiness."""
    target = _target(release, namespace, chart, helm, kubectl)
    try:
        require_cluster(target)
        values = release_values(target)
        active = active_color(values)
        for color in (active, other(active)):
            state = color_state(target, color)
            role = "active " if color == active else "preview"
            tag = color_tag(values, color, _app_version(chart))
            mark = "ready" if state.ready else "NOT READY"
            print(f"{role} {color:<5} tag {tag:<12} {mark:<9} {state.detail}")
    except DeployError as exc:
        raise _fail(exc) from None


@cli.command()
def stage(
    tag: Annotated[str, typer.Option(help="Image tag of the release to preview.")],
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
    dry_run: DryRun = False,
) -> None:
    """Deploy TAG on the idle colour (migrations run first, expand-only); traffic stays put."""
    target = _target(release, namespace, chart, helm, kubectl)
    try:
        require_cluster(target)
        values = release_values(target)
        active = active_color(values)
        pinned = color_tag(values, active, _app_version(chart))
        idle = other(active)
        cmd = upgrade_command(
            target,
            {
                "image.tag": tag,
                f"colors.{active}.tag": pinned,
                f"colors.{idle}.enabled": "true",
                f"colors.{idle}.tag": tag,
            },
        )
        print(
            f"staging {tag} on {idle}; {active} stays on {pinned} and keeps the traffic"
        )
        execute(cmd, dry_run)
    except DeployError as exc:
        raise _fail(exc) from None


@cli.command()
def promote(
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
    dry_run: DryRun = False,
) -> None:
    """Route traffic to the preview colour (refused unless all its pods are ready)."""
    target = _target(release, namespace, chart, helm, kubectl)
    try:
        switch(target, dry_run=dry_run, verb="promote")
    except DeployError as exc:
        raise _fail(exc) from None


@cli.command()
def rollback(
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
    dry_run: DryRun = False,
) -> None:
    """Route traffic back to the other colour (the previous release), if it is still ready."""
    target = _target(release, namespace, chart, helm, kubectl)
    try:
        switch(target, dry_run=dry_run, verb="roll back")
    except DeployError as exc:
        raise _fail(exc) from None


@cli.command()
def retire(
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
    dry_run: DryRun = False,
) -> None:
    """Remove the idle colour's Deployments (after the new release has proven itself)."""
    target = _target(release, namespace, chart, helm, kubectl)
    try:
        require_cluster(target)
        idle = other(active_color(release_values(target)))
        execute(upgrade_command(target, {f"colors.{idle}.enabled": "false"}), dry_run)
    except DeployError as exc:
        raise _fail(exc) from None


if __name__ == "__main__":
    cli()
