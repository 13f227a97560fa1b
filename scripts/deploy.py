"""Blue-green operations for the Ballast Helm release.

    uv run python scripts/deploy.py status   [--release ballast --namespace ballast]
    uv run python scripts/deploy.py stage    --tag 0.2.0     # next release on the idle colour
    uv run python scripts/deploy.py promote                  # gate, then route traffic to it
    uv run python scripts/deploy.py rollback                 # gate, then route traffic back
    uv run python scripts/deploy.py retire   --after 1h      # remove the idle colour

stage and retire change what is deployed: they run `helm upgrade` of the chart directory
(`--chart`), printed before it runs (`--dry-run`: print only).

promote and rollback are routing-only. They never run `helm upgrade`: no migration hook
reruns, the operator's local chart is never deployed, and nothing but the switched-to
colour is waited on. In order:

1. the colour they switch to must be deployed; rollback (or a promote that is one) is
   refused when the live colour's release contracted the schema (`stage --contract`
   records `colors.<colour>.contract`), because the release on the other colour may no
   longer run on it and a schema has no way back;
2. that colour's ui and api Deployments are scaled up to the live colour's current replica
   counts (`kubectl scale`) and waited for (`kubectl rollout status`, that colour only);
3. the smoke test runs against the `-preview` Services through `kubectl port-forward`:
   api /healthz and /readyz, login as the smoke-test user (--smoke-username/--smoke-password,
   or the Secret --smoke-secret with keys username and password), a read, a draft written,
   read back and discarded, logout; ui /_stcore/health;
4. with --prometheus-url, the switched-to colour's api error ratio and p95 latency must stay
   under --max-error-ratio and --max-p95-seconds at every poll for --gate-minutes;
5. only then the Services' selectors (`ballast.io/color`) are patched: `<fullname>-api`
   and `<fullname>-ui` to the new colour (annotated with `ballast.io/switched-at` and
   `ballast.io/switched-from`), their `-preview` twins to the old one. If any patch fails,
   the Services already patched are put back and the replica counts restored: the
   command succeeds only when all four Services select what it says.
   `promote --gate-only` stops before this step (for a switch made elsewhere, e.g. in git);
6. then the background workloads follow the traffic: the worker and the backup exporter
   Deployments (one each, outside the colours) are moved to the image tag the now-live
   colour's api Deployment runs (`kubectl set image`, keeping each image's repository; the
   wait-for-migrations init container too) and waited for (`kubectl rollout status`). Those
   already on that tag are left alone. This comes after the switch and cannot undo it: if it
   fails, the command exits non-zero saying traffic IS switched and the workers are not, with
   the commands that finish the move.

`stage` pins them (`worker.tag`, `backup.exporter.tag`) to the live colour's tag, so the staged
release takes no job before it is promoted; the backup CronJobs and the migration Job run
`image.tag`, the newest release (charts/ballast/README.md, Blue-green).

Why a patch and not `helm upgrade --set activeColor=...`: Helm's --wait (and --atomic,
which implies it) waits on every workload of the release, not just the switched-to
colour, and an upgrade needs the released chart, which Helm does not hand back. A flip of
activeColor renders nothing but these four selectors (tests/charts/test_objects.py), so
the patch is exactly what an upgrade would change. Helm's stored activeColor is then
stale; the Services are the truth: status reports both, and stage and retire pass
`--set activeColor=<the colour the Services select>` (and that colour's tag as `worker.tag`
and `backup.exporter.tag`) so their upgrade keeps the traffic and the workers where they are.
A hand-written `helm upgrade` must do the same (charts/ballast/README.md).

retire refuses until --after has passed since the last switch (the `ballast.io/switched-at`
annotation): the old colour stays up for a quick rollback until then.

A release with `rollout.mode: argo` has no colours: Argo Rollouts switches its Services and
runs the same smoke test and gate as its prePromotionAnalysis. Every command then refuses
with the `kubectl argo rollouts` command to use instead, before touching anything.

The runbook is charts/ballast/README.md.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
import select
import shlex
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "ballast"
COLORS = ("blue", "green")
COMPONENTS = ("api", "ui")
SELECTOR = "ballast.io/color"
SWITCHED_AT = "ballast.io/switched-at"
SWITCHED_FROM = "ballast.io/switched-from"
# The smoke test (`smoke_api`), shared with rollout.mode argo's analysis Job.
SMOKE_SCRIPT = CHART / "files" / "smoke_test.py"
# Workloads outside the colours that run app code on jobs and follow the live colour's
# release: (Deployment name suffix, its main container, the chart value pinning its tag).
# The backup CronJobs are not among them: they run image.tag, the release whose schema the
# database has (charts/ballast/templates/backup/backup-cronjob.yaml).
FOLLOWERS = (
    ("worker", "worker", "worker.tag"),
    ("backup-exporter", "exporter", "backup.exporter.tag"),
)

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Blue-green operations for the Ballast Helm release (runbook: charts/ballast/README.md).",
)


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


@dataclass(frozen=True)
class Route:
    """A Service that routes by colour: `<fullname>-<component>` or its `-preview` twin."""

    service: str
    component: str
    role: str  # "active" or "preview"
    color: str
    port: int
    annotations: dict[str, str]


@dataclass(frozen=True)
class Move:
    """A follower Deployment to move to the live colour's tag: `kubectl set image` arguments."""

    deployment: str
    images: dict[str, str]  # container -> new image
    tag: str

    def set_command(self, target: Target) -> list[str]:
        pairs = [f"{name}={image}" for name, image in self.images.items()]
        return kube(target, "set", "image", f"deployment/{self.deployment}", *pairs)

    def wait_command(self, target: Target, timeout: int) -> list[str]:
        return kube(
            target,
            "rollout",
            "status",
            f"deployment/{self.deployment}",
            f"--timeout={timeout}s",
        )


@dataclass(frozen=True)
class Gate:
    """The optional Prometheus gate: thresholds held at every poll for `minutes`."""

    url: str
    max_error_ratio: float
    max_p95_seconds: float
    minutes: float
    interval_seconds: float
    window: str


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


def _reason(proc: subprocess.CompletedProcess[str], fallback: str) -> str:
    return (proc.stderr.strip().splitlines() or [fallback])[-1]


def kube(target: Target, *args: str) -> list[str]:
    """A kubectl command line in the release's namespace."""
    return [target.kubectl, *args, "-n", target.namespace]


def get_json(target: Target, kind: str, name: str) -> dict[str, Any] | None:
    """One object as JSON, or None when kubectl cannot get it."""
    proc = _run(kube(target, "get", kind, name, "-o", "json"))
    if proc.returncode != 0:
        return None
    return dict(json.loads(proc.stdout))


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
        reason = _reason(proc, "kubectl version failed")
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


def refuse_argo(target: Target, values: dict[str, Any], verb: str) -> None:
    """Raise, naming what to run instead, when the release runs rollout.mode argo."""
    if str((values.get("rollout") or {}).get("mode", "colors")) != "argo":
        return
    rollout, ns = f"{target.fullname}-app", target.namespace
    instead = {
        "promote": f"kubectl argo rollouts promote {rollout} -n {ns}",
        "roll back": f"kubectl argo rollouts undo {rollout} -n {ns}, then promote "
        f"(before promotion: kubectl argo rollouts abort {rollout} -n {ns})",
        "show": f"kubectl argo rollouts get rollout {rollout} -n {ns}",
        "stage": "helm upgrade --reuse-values --set-string image.tag=<tag> (the Rollout "
        "previews it)",
        "retire": "nothing: Argo Rollouts scales the old ReplicaSet down "
        "rollout.argo.scaleDownDelaySeconds after the promotion",
    }[verb]
    raise DeployError(
        f"refusing to {verb}: release {target.release} runs rollout.mode argo, where Argo "
        f"Rollouts switches traffic; use {instead}"
    )


def active_color(values: dict[str, Any]) -> str:
    color = values.get("activeColor", "blue")
    if color not in COLORS:
        raise DeployError(f"activeColor is {color!r}, not blue or green")
    return str(color)


def _color_values(values: dict[str, Any], color: str) -> dict[str, Any]:
    return dict((values.get("colors") or {}).get(color) or {})


def contracted(values: dict[str, Any], color: str) -> bool:
    """Whether `color`'s release was staged as contracting the schema (`stage --contract`)."""
    return str(_color_values(values, color).get("contract", False)).lower() == "true"


def color_tag(values: dict[str, Any], color: str, app_version: str) -> str:
    """The image tag a colour runs: its own tag, else image.tag, else the chart's appVersion."""
    own = _color_values(values, color).get("tag") or ""
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


def deployment_name(target: Target, component: str, color: str) -> str:
    return f"{target.fullname}-{component}-{color}"


def color_state(target: Target, color: str) -> ColorState:
    details, ready, deployed = [], True, True
    for component in COMPONENTS:
        doc = get_json(target, "deployment", deployment_name(target, component, color))
        if doc is None:
            deployed, ready = False, False
            details.append(f"{component}: not deployed")
            continue
        ok, detail = deployment_ready(doc)
        ready = ready and ok
        details.append(f"{component}: {detail}")
    return ColorState(color, deployed, ready, "; ".join(details))


def routes(target: Target) -> list[Route]:
    """The Services that route by colour, as they are now."""
    found = []
    for component in COMPONENTS:
        for suffix, role in (("", "active"), ("-preview", "preview")):
            name = f"{target.fullname}-{component}{suffix}"
            doc = get_json(target, "service", name)
            if doc is None:
                continue
            spec = doc.get("spec", {})
            found.append(
                Route(
                    service=name,
                    component=component,
                    role=role,
                    color=str((spec.get("selector") or {}).get(SELECTOR, "")),
                    port=int((spec.get("ports") or [{}])[0].get("port", 0)),
                    annotations=dict(doc["metadata"].get("annotations") or {}),
                )
            )
    return found


def live_color(target: Target, values: dict[str, Any]) -> tuple[str, list[Route]]:
    """The colour the active Services select (Helm's activeColor when there are none)."""
    found = routes(target)
    active = [r for r in found if r.role == "active"]
    if not active:
        return active_color(values), found
    colors = {r.color for r in active}
    if len(colors) != 1 or not colors <= set(COLORS):
        selects = ", ".join(
            f"{r.service} selects {r.color or 'no colour'}" for r in active
        )
        raise DeployError(
            f"the active Services disagree ({selects}): a switch was interrupted; "
            "patch them to one colour (charts/ballast/README.md, Blue-green)"
        )
    return colors.pop(), found


def switched_at(found: list[Route]) -> datetime | None:
    """When the active Services were last switched by promote/rollback."""
    stamps = [
        datetime.fromisoformat(r.annotations[SWITCHED_AT])
        for r in found
        if r.role == "active" and SWITCHED_AT in r.annotations
    ]
    return max(stamps) if stamps else None


def execute(cmd: list[str], dry_run: bool) -> None:
    print(f"$ {shlex.join(cmd)}")
    if dry_run:
        print("(dry run: not executed)")
        return
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise DeployError(f"helm upgrade failed with exit code {proc.returncode}")


def run_kubectl(cmd: list[str], what: str, timeout: float = 30) -> None:
    """Run a kubectl command that changes something, printed first."""
    print(f"$ {shlex.join(cmd)}")
    proc = _run(cmd, timeout)
    if proc.returncode != 0:
        raise DeployError(f"{what} failed: {_reason(proc, 'kubectl failed')}")


# -- promotion gate -------------------------------------------------------------------


def match_replicas(
    target: Target, live: str, to: str, dry_run: bool
) -> list[tuple[str, int]]:
    """Scale `to`'s Deployments up to `live`'s current replica counts.

    Returns the (Deployment, previous replicas) pairs it scaled, to restore on failure.
    """
    scaled = []
    for component in COMPONENTS:
        src = get_json(target, "deployment", deployment_name(target, component, live))
        name = deployment_name(target, component, to)
        dst = get_json(target, "deployment", name)
        if src is None or dst is None:
            continue
        want = int(src.get("spec", {}).get("replicas", 1))
        have = int(dst.get("spec", {}).get("replicas", 1))
        if have >= want:
            continue
        cmd = kube(target, "scale", f"deployment/{name}", f"--replicas={want}")
        if dry_run:
            print(f"would run: {shlex.join(cmd)}")
            continue
        run_kubectl(cmd, f"scaling {name} to {want}")
        scaled.append((name, have))
    return scaled


def restore_replicas(target: Target, scaled: list[tuple[str, int]]) -> list[str]:
    """Scale back what match_replicas scaled; returns what could not be restored."""
    failed = []
    for name, replicas in reversed(scaled):
        cmd = kube(target, "scale", f"deployment/{name}", f"--replicas={replicas}")
        try:
            run_kubectl(cmd, f"scaling {name} back to {replicas}")
        except DeployError:
            failed.append(shlex.join(cmd))
    return failed


def wait_ready(target: Target, color: str, timeout: int) -> ColorState:
    """Wait for `color`'s Deployments, and only those, to finish rolling out."""
    for component in COMPONENTS:
        name = deployment_name(target, component, color)
        cmd = kube(
            target, "rollout", "status", f"deployment/{name}", f"--timeout={timeout}s"
        )
        proc = _run(cmd, timeout=timeout + 30)
        if proc.returncode != 0:
            raise DeployError(
                f"{name} not ready within {timeout}s ({_reason(proc, 'rollout status failed')})"
            )
    state = color_state(target, color)
    if not state.ready:
        raise DeployError(f"{color} is not ready ({state.detail})")
    return state


@contextmanager
def port_forward(target: Target, service: str, port: int) -> Iterator[str]:
    """`kubectl port-forward svc/<service>` on a free local port; yields its base URL."""
    cmd = kube(
        target, "port-forward", f"svc/{service}", f":{port}", "--address", "127.0.0.1"
    )
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except FileNotFoundError:
        raise DeployError(f"{cmd[0]} is not installed") from None
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        readable, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if readable else ""
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if match is None:
            proc.kill()
            proc.wait()
            reason = (proc.stderr.read().strip().splitlines() or ["no port"])[-1]
            raise DeployError(f"kubectl port-forward to {service} failed ({reason})")
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _expect(step: str, status: int, want: int) -> None:
    if status != want:
        raise DeployError(
            f"smoke test failed: {step} answered HTTP {status}, not {want}"
        )


def _load_smoke_module() -> ModuleType:
    """charts/ballast/files/smoke_test.py: the one smoke test, also run by the Argo analysis Job."""
    spec = importlib.util.spec_from_file_location("ballast_smoke_test", SMOKE_SCRIPT)
    if spec is None or spec.loader is None:
        raise DeployError(f"cannot load the smoke test {SMOKE_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SMOKE = _load_smoke_module()


def http(
    method: str,
    url: str,
    *,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTP request (the smoke test's); (status, parsed JSON body or text)."""
    try:
        result: tuple[int, Any] = _SMOKE.http(
            method, url, body=body, token=token, headers=headers
        )
    except _SMOKE.SmokeError as exc:
        raise DeployError(str(exc)) from None
    return result


def smoke_api(base: str, username: str, password: str) -> None:
    """Health, readiness, login, a read and a draft round trip against one api."""
    try:
        _SMOKE.smoke_api(base, username, password)
    except _SMOKE.SmokeError as exc:
        raise DeployError(str(exc)) from None


def smoke_credentials(
    target: Target, username: str | None, password: str | None, secret: str
) -> tuple[str, str]:
    """The smoke-test user: the options (or their env vars), else the Secret's keys."""
    if username and password:
        return username, password
    doc = get_json(target, "secret", secret)
    data = (doc or {}).get("data") or {}
    if "username" not in data or "password" not in data:
        raise DeployError(
            "no smoke-test credentials: set BALLAST_SMOKE_USERNAME and "
            f"BALLAST_SMOKE_PASSWORD, or create the Secret {secret} with keys username "
            "and password (--no-smoke skips the smoke test)"
        )
    return (
        base64.b64decode(data["username"]).decode(),
        base64.b64decode(data["password"]).decode(),
    )


def smoke_test(target: Target, found: list[Route], creds: tuple[str, str]) -> None:
    """Run the smoke test through the -preview Services (they select the idle colour)."""
    preview = {r.component: r for r in found if r.role == "preview"}
    if "api" not in preview:
        raise DeployError(f"no Service {target.fullname}-api-preview to smoke-test")
    with port_forward(target, preview["api"].service, preview["api"].port) as base:
        smoke_api(base, *creds)
    checked = "api health, readiness, login, read, draft round trip"
    if "ui" in preview:
        with port_forward(target, preview["ui"].service, preview["ui"].port) as base:
            status, _ = http("GET", f"{base}/_stcore/health")
            _expect("ui GET /_stcore/health", status, 200)
        checked += ", ui health"
    print(f"smoke test passed ({checked})")


def gate_queries(namespace: str, color: str, window: str) -> dict[str, str]:
    """PromQL of the gate: the colour's api 5xx ratio and p95 latency over `window`."""
    sel = f'namespace="{namespace}", service="api", color="{color}"'
    return {
        "error ratio": (
            f'(sum(rate(ballast_http_requests_total{{{sel}, status=~"5.."}}[{window}]))'
            f" or vector(0)) / sum(rate(ballast_http_requests_total{{{sel}}}[{window}]))"
        ),
        "p95": (
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(ballast_http_request_duration_seconds_bucket{{{sel}}}[{window}])))"
        ),
    }


def prom_query(url: str, query: str) -> float | None:
    """An instant query's first value; None when there are no samples (or NaN)."""
    full = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    status, answer = http("GET", full)
    if (
        status != 200
        or not isinstance(answer, dict)
        or answer.get("status") != "success"
    ):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise DeployError(f"Prometheus query failed: HTTP {status} {error}")
    result = answer["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


def prometheus_gate(
    gate: Gate,
    namespace: str,
    color: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll the gate's queries until `gate.minutes` have passed; any breach fails it."""
    queries = gate_queries(namespace, color, gate.window)
    limits = {"error ratio": gate.max_error_ratio, "p95": gate.max_p95_seconds}
    deadline = clock() + gate.minutes * 60
    checks = 0
    while True:
        checks += 1
        seen = []
        for name, query in queries.items():
            value = prom_query(gate.url, query)
            if value is None:
                raise DeployError(
                    f"Prometheus gate: no {name} samples for {color}'s api over "
                    f"{gate.window} (is it scraped, and has it served requests?)"
                )
            if value > limits[name]:
                raise DeployError(
                    f"Prometheus gate: {color}'s api {name} {value:.4g} is above "
                    f"{limits[name]:g} (poll {checks})"
                )
            seen.append(f"{name} {value:.4g} <= {limits[name]:g}")
        print(f"gate poll {checks}: {', '.join(seen)}")
        left = deadline - clock()
        if left <= 0:
            break
        sleep(min(gate.interval_seconds, left))
    print(f"Prometheus gate held for {gate.minutes:g} min ({checks} polls)")


# -- the switch -----------------------------------------------------------------------


def patch_command(
    target: Target, route: Route, color: str, stamp: dict[str, Any]
) -> list[str]:
    body: dict[str, Any] = {"spec": {"selector": {SELECTOR: color}}}
    if stamp and route.role == "active":
        body["metadata"] = {"annotations": stamp}
    return kube(
        target,
        "patch",
        "service",
        route.service,
        "--type",
        "merge",
        "-p",
        json.dumps(body, separators=(",", ":")),
    )


def switch_plan(found: list[Route], live: str, to: str) -> list[tuple[Route, str]]:
    """Active Services to `to` first (that is the switch), then the previews to `live`."""
    active = [(r, to) for r in found if r.role == "active"]
    return active + [(r, live) for r in found if r.role == "preview"]


def switch_services(target: Target, found: list[Route], live: str, to: str) -> None:
    """Patch every routing Service; on a failure put back the ones already patched."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    done: list[Route] = []
    for route, color in switch_plan(found, live, to):
        stamp = {SWITCHED_AT: now, SWITCHED_FROM: live}
        try:
            run_kubectl(
                patch_command(target, route, color, stamp), f"patching {route.service}"
            )
        except DeployError as exc:
            stuck = []
            for back in reversed(done):
                # The annotations go back to what they were (null removes an added one).
                old = {k: back.annotations.get(k) for k in (SWITCHED_AT, SWITCHED_FROM)}
                cmd = patch_command(target, back, back.color, old)
                try:
                    run_kubectl(cmd, f"restoring {back.service}")
                except DeployError:
                    stuck.append(shlex.join(cmd))
            if stuck:
                raise DeployError(
                    f"{exc}; restoring failed too, traffic is split: run {' ; '.join(stuck)}"
                ) from None
            raise DeployError(f"{exc}; every Service was put back on {live}") from None
        done.append(route)


# -- background work follows the traffic ------------------------------------------------


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; the tag is "" when it names none."""
    ref = image.split("@", 1)[0]  # a digest pins content, not a release: drop it
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:  # "registry:5000/name" has a port, not a tag
        return ref, ""
    return repo, tag


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A Deployment's init containers and containers."""
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def find_deployment(target: Target, name: str) -> dict[str, Any] | None:
    """A Deployment as JSON, None when it does not exist; any other failure raises."""
    proc = _run(kube(target, "get", "deployment", name, "-o", "json"))
    if proc.returncode == 0:
        return dict(json.loads(proc.stdout))
    if "NotFound" in proc.stderr:
        return None
    raise DeployError(
        f"cannot read deployment {name}: {_reason(proc, 'kubectl failed')}"
    )


def color_image_tag(target: Target, color: str) -> str:
    """The image tag `color`'s api Deployment runs (its ui's when there is no api)."""
    for component in COMPONENTS:
        name = deployment_name(target, component, color)
        doc = find_deployment(target, name)
        for container in pod_containers(doc or {}):
            if container.get("name") == component:
                tag = split_image(str(container.get("image", "")))[1]
                if tag:
                    return tag
    raise DeployError(
        f"cannot tell which release {color} runs: no image tag on "
        f"{deployment_name(target, 'api', color)} or {deployment_name(target, 'ui', color)}"
    )


def plan_followers(target: Target, color: str) -> tuple[list[Move], list[str]]:
    """What moving the worker and the backup exporter to `color`'s tag takes (reads only).

    Returns the Deployments to move and a line for each one that needs nothing (absent, or
    already on that tag). Every container of a Deployment that runs the main container's
    image repository moves (the worker's wait-for-migrations init container too), as a
    render with that tag would; sidecars of other images are left alone.
    """
    found: list[tuple[str, str, list[dict[str, Any]]]] = []
    for suffix, main, _ in FOLLOWERS:
        name = f"{target.fullname}-{suffix}"
        doc = find_deployment(target, name)
        if doc is None:
            continue
        containers = pod_containers(doc)
        primary = next((c for c in containers if c.get("name") == main), None)
        if primary is None:
            raise DeployError(f"deployment {name} has no container {main!r}")
        found.append((name, split_image(str(primary.get("image", "")))[0], containers))
    if not found:
        return [], [
            "no worker or backup exporter Deployment: no background work to move"
        ]
    tag = color_image_tag(target, color)
    moves: list[Move] = []
    notes: list[str] = []
    for name, repo, containers in found:
        images: dict[str, str] = {}
        for c in containers:
            their_repo, their_tag = split_image(str(c.get("image", "")))
            if their_repo == repo and their_tag != tag:
                images[str(c["name"])] = f"{repo}:{tag}"
        if images:
            moves.append(Move(name, images, tag))
        else:
            notes.append(f"{name} already runs {tag} ({color}'s release)")
    return moves, notes


def move_followers(target: Target, moves: list[Move], timeout: int) -> None:
    """Set the new images, then wait for each rollout; raise naming what is left to do."""
    for i, move in enumerate(moves):
        try:
            run_kubectl(
                move.set_command(target), f"moving {move.deployment} to {move.tag}"
            )
        except DeployError as exc:
            left = [
                cmd
                for m in moves[i:]
                for cmd in (m.set_command(target), m.wait_command(target, timeout))
            ]
            left += [m.wait_command(target, timeout) for m in moves[:i]]
            kept = " and ".join(m.deployment for m in moves[i:])
            raise _not_followed(f"{exc} ({kept} keep their old image)", left) from None
    for i, move in enumerate(moves):
        cmd = move.wait_command(target, timeout)
        print(f"$ {shlex.join(cmd)}")
        proc = _run(cmd, timeout=timeout + 30)
        if proc.returncode != 0:
            reason = (
                f"{move.deployment} not rolled out on {move.tag} within {timeout}s "
                f"({_reason(proc, 'rollout status failed')})"
            )
            left = [m.wait_command(target, timeout) for m in moves[i:]]
            raise _not_followed(reason, left)


def _not_followed(reason: str, left: list[list[str]]) -> DeployError:
    return DeployError(
        f"{reason}; finish with: {' && '.join(shlex.join(cmd) for cmd in left)}"
    )


def switch(
    target: Target,
    *,
    verb: str,
    dry_run: bool,
    ready_timeout: int,
    creds: Callable[[], tuple[str, str]] | None,
    gate: Gate | None,
    gate_only: bool = False,
) -> None:
    """Gate the colour that is not live, then route traffic to it (see the module docstring)."""
    try:
        require_cluster(target)
    except DeployError as exc:
        raise DeployError(
            f"refusing to {verb}: {exc}; cannot check the colour is ready"
        ) from None
    values = release_values(target)
    refuse_argo(target, values, verb)
    live, found = live_color(target, values)
    to = other(live)
    if not any(r.role == "active" for r in found):
        raise DeployError(
            f"refusing to {verb}: no Service {target.fullname}-api or -ui to switch"
        )
    plan = [
        shlex.join(patch_command(target, r, c, {}))
        for r, c in switch_plan(found, live, to)
    ]
    if contracted(values, live):
        raise DeployError(
            f"refusing to {verb}: {live}'s release contracted the schema "
            f"(colors.{live}.contract), so the release on {to} may not run on it and "
            "the schema has no way back; fix forward: stage a new release on "
            f"{to} with deploy.py stage"
        )
    state = color_state(target, to)
    if not state.deployed:
        for line in plan:
            print(f"would run: {line}")
        raise DeployError(f"refusing to {verb}: {to} is not deployed ({state.detail})")
    # Read before anything changes: a worker move that cannot be planned refuses here.
    try:
        moves, notes = plan_followers(target, to)
    except DeployError as exc:
        raise DeployError(
            f"refusing to {verb}: {exc}; traffic stays on {live}"
        ) from None
    print(f"switching traffic from {live} to {to}")
    # Credentials first: a missing Secret refuses before anything is scaled.
    user = creds() if creds is not None and not dry_run else None
    scaled = match_replicas(target, live, to, dry_run)
    if dry_run:
        if creds is not None:
            print(f"would smoke-test {target.fullname}-api-preview and -ui-preview")
        if gate is not None:
            print(f"would hold the Prometheus gate for {gate.minutes:g} min")
        for line in plan:
            print(f"would run: {line}")
        for move in moves:
            print(f"would run: {shlex.join(move.set_command(target))}")
        for move in moves:
            print(f"would run: {shlex.join(move.wait_command(target, ready_timeout))}")
        for note in notes:
            print(note)
        print(f"(dry run: nothing changed; {to}: {state.detail})")
        return
    try:
        state = wait_ready(target, to, ready_timeout)
        print(f"{to} is ready ({state.detail})")
        if user is not None:
            smoke_test(target, found, user)
        if gate is not None:
            prometheus_gate(gate, target.namespace, to)
        if gate_only:
            print(f"{to} passed the gate; not switching (--gate-only)")
            if moves:
                print(
                    f"the worker and backup exporter stay where they are: switch them with "
                    f"the traffic (worker.tag and backup.exporter.tag {moves[0].tag})"
                )
            return
        switch_services(target, found, live, to)
    except DeployError as exc:
        stuck = restore_replicas(target, scaled)
        note = f"; scale back by hand: {' ; '.join(stuck)}" if stuck else ""
        raise DeployError(
            f"refusing to {verb}: {exc}; traffic stays on {live}{note}"
        ) from None
    now, _ = live_color(target, values)
    if now != to:
        raise DeployError(
            f"{verb} patched the Services but they select {now}, not {to}"
        )
    print(f"traffic is on {to}; {live} keeps running for a rollback (retire it later)")
    # The switch stands whatever happens next: report it, never undo it.
    try:
        move_followers(target, moves, ready_timeout)
    except DeployError as exc:
        raise DeployError(
            f"traffic IS on {to} (the Services were switched), but the background work "
            f"does not follow it yet: {exc}"
        ) from None
    for move in moves:
        print(f"{move.deployment} now runs {move.tag} ({to}'s release)")
    for note in notes:
        print(note)


Release = Annotated[str, typer.Option(help="Helm release name.")]
Namespace = Annotated[str, typer.Option(help="Kubernetes namespace of the release.")]
Chart = Annotated[
    Path,
    typer.Option(help="Chart directory (or packaged chart) that stage/retire deploy."),
]
Helm = Annotated[str, typer.Option(help="helm binary.")]
Kubectl = Annotated[str, typer.Option(help="kubectl binary.")]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the commands that change something only."),
]
ReadyTimeout = Annotated[
    int,
    typer.Option(
        help="Seconds to wait for the switched-to colour's Deployments to be ready."
    ),
]
Smoke = Annotated[
    bool,
    typer.Option(
        help="Smoke-test the -preview Services before switching (--no-smoke: skip)."
    ),
]
SmokeUser = Annotated[
    str | None,
    typer.Option(
        envvar="BALLAST_SMOKE_USERNAME", help="Smoke-test user (else the Secret's)."
    ),
]
SmokePassword = Annotated[
    str | None,
    typer.Option(
        envvar="BALLAST_SMOKE_PASSWORD",
        help="Smoke-test user's password (else the Secret's).",
        show_default=False,
    ),
]
SmokeSecret = Annotated[
    str | None,
    typer.Option(
        help="Secret with keys username and password (default: <fullname>-smoke-test)."
    ),
]
PrometheusUrl = Annotated[
    str | None,
    typer.Option(
        help="Prometheus base URL: hold the error-ratio/p95 gate before switching."
    ),
]
MaxErrorRatio = Annotated[
    float, typer.Option(help="Gate: highest api 5xx ratio of the switched-to colour.")
]
MaxP95 = Annotated[
    float,
    typer.Option(help="Gate: highest api p95 latency (in seconds) of that colour."),
]
GateMinutes = Annotated[
    float, typer.Option(help="Gate: minutes the thresholds must hold (polled).")
]
GateInterval = Annotated[float, typer.Option(help="Gate: seconds between polls.")]
GateWindow = Annotated[str, typer.Option(help="Gate: PromQL rate window, e.g. 5m.")]


def _target(
    release: str, namespace: str, chart: Path, helm: str, kubectl: str
) -> Target:
    return Target(release, namespace, chart, helm, kubectl, fullname(release))


def _fail(exc: DeployError) -> typer.Exit:
    print(f"error: {exc}", file=sys.stderr)
    return typer.Exit(1)


def _app_version(chart: Path) -> str:
    try:
        text = (chart / "Chart.yaml").read_text(encoding="utf-8")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    return ""


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if match is None:
        raise DeployError(f"--after {text!r} is not a duration like 30m, 2h or 0")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return timedelta(seconds=float(match.group(1)) * scale)


@cli.command()
def status(
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
) -> None:
    """Show the live and preview colours, their image tags and readiness."""
    target = _target(release, namespace, chart, helm, kubectl)
    try:
        require_cluster(target)
        values = release_values(target)
        refuse_argo(target, values, "show")
        active, found = live_color(target, values)
        for color in (active, other(active)):
            state = color_state(target, color)
            role = "active " if color == active else "preview"
            tag = color_tag(values, color, _app_version(chart))
            mark = "ready" if state.ready else "NOT READY"
            print(f"{role} {color:<5} tag {tag:<12} {mark:<9} {state.detail}")
        live_tag = color_tag(values, active, _app_version(chart))
        for suffix, main, _ in FOLLOWERS:
            doc = find_deployment(target, f"{target.fullname}-{suffix}")
            runs = [
                split_image(str(c.get("image", "")))[1]
                for c in pod_containers(doc or {})
                if c.get("name") == main
            ]
            if doc is None or not runs:
                continue
            ok, detail = deployment_ready(doc)
            follows = f"follows {active}" if runs[0] == live_tag else f"NOT {active}'s"
            mark = "ready" if ok else "NOT READY"
            print(f"{suffix:<15} tag {runs[0]:<12} {follows:<13} {mark:<9} {detail}")
        when = switched_at(found)
        if when is not None:
            print(f"switched to {active} at {when.isoformat()}")
        if active_color(values) != active:
            print(
                f"note: Helm's values say activeColor={active_color(values)}; the Services "
                f"select {active}; stage and retire pass --set activeColor={active}"
            )
    except DeployError as exc:
        raise _fail(exc) from None


@cli.command()
def stage(
    tag: Annotated[str, typer.Option(help="Image tag of the release to preview.")],
    contract: Annotated[
        bool,
        typer.Option(
            help="The release's migrations contract the schema (drop or tighten what the "
            "live release had): rollback to the live release is refused afterwards."
        ),
    ] = False,
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
        refuse_argo(target, values, "stage")
        active, _ = live_color(target, values)
        pinned = color_tag(values, active, _app_version(chart))
        idle = other(active)
        cmd = upgrade_command(
            target,
            {
                # The Services are the truth after a promote/rollback (a selector patch).
                "activeColor": active,
                "image.tag": tag,
                f"colors.{active}.tag": pinned,
                # Its contract mark spoke of the release this stage replaces.
                f"colors.{active}.contract": "false",
                f"colors.{idle}.enabled": "true",
                f"colors.{idle}.tag": tag,
                f"colors.{idle}.contract": str(contract).lower(),
                # Background work stays on the live release until promote moves it.
                **{key: pinned for _, _, key in FOLLOWERS},
            },
        )
        print(
            f"staging {tag} on {idle}; {active} stays on {pinned} and keeps the traffic"
        )
        print(
            f"the worker and backup exporter stay on {pinned} ({active}'s release) and take "
            f"every job until promote moves them to {tag}; rollback moves them back; the "
            f"migration Job and the backup CronJobs run {tag} (charts/ballast/README.md, "
            "Blue-green)"
        )
        if contract:
            print(
                f"contract: once {idle} is live, rollback to {active} ({pinned}) is refused"
            )
        execute(cmd, dry_run)
    except DeployError as exc:
        raise _fail(exc) from None


def _switch_command(
    verb: str,
    target: Target,
    *,
    dry_run: bool,
    ready_timeout: int,
    smoke: bool,
    smoke_username: str | None,
    smoke_password: str | None,
    smoke_secret: str | None,
    gate: Gate | None,
    gate_only: bool = False,
) -> None:
    secret = smoke_secret or f"{target.fullname}-smoke-test"

    def creds() -> tuple[str, str]:
        return smoke_credentials(target, smoke_username, smoke_password, secret)

    try:
        switch(
            target,
            verb=verb,
            dry_run=dry_run,
            ready_timeout=ready_timeout,
            creds=creds if smoke else None,
            gate=gate,
            gate_only=gate_only,
        )
    except DeployError as exc:
        raise _fail(exc) from None


def _gate(
    url: str | None,
    max_error_ratio: float,
    max_p95_seconds: float,
    minutes: float,
    interval: float,
    window: str,
) -> Gate | None:
    if not url:
        return None
    return Gate(url, max_error_ratio, max_p95_seconds, minutes, interval, window)


@cli.command()
def promote(
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
    dry_run: DryRun = False,
    ready_timeout: ReadyTimeout = 600,
    smoke: Smoke = True,
    smoke_username: SmokeUser = None,
    smoke_password: SmokePassword = None,
    smoke_secret: SmokeSecret = None,
    prometheus_url: PrometheusUrl = None,
    max_error_ratio: MaxErrorRatio = 0.01,
    max_p95_seconds: MaxP95 = 0.5,
    gate_minutes: GateMinutes = 5.0,
    gate_interval: GateInterval = 30.0,
    gate_window: GateWindow = "5m",
    gate_only: Annotated[
        bool,
        typer.Option(
            "--gate-only",
            help="Scale, smoke-test and gate, but do not switch (e.g. before an Argo CD sync).",
        ),
    ] = False,
) -> None:
    """Route traffic to the preview colour, after scaling it, a smoke test and the gate."""
    target = _target(release, namespace, chart, helm, kubectl)
    gate = _gate(
        prometheus_url,
        max_error_ratio,
        max_p95_seconds,
        gate_minutes,
        gate_interval,
        gate_window,
    )
    _switch_command(
        "promote",
        target,
        dry_run=dry_run,
        ready_timeout=ready_timeout,
        smoke=smoke,
        smoke_username=smoke_username,
        smoke_password=smoke_password,
        smoke_secret=smoke_secret,
        gate=gate,
        gate_only=gate_only,
    )


@cli.command()
def rollback(
    release: Release = "ballast",
    namespace: Namespace = "ballast",
    chart: Chart = CHART,
    helm: Helm = "helm",
    kubectl: Kubectl = "kubectl",
    dry_run: DryRun = False,
    ready_timeout: ReadyTimeout = 600,
    smoke: Smoke = True,
    smoke_username: SmokeUser = None,
    smoke_password: SmokePassword = None,
    smoke_secret: SmokeSecret = None,
    prometheus_url: PrometheusUrl = None,
    max_error_ratio: MaxErrorRatio = 0.01,
    max_p95_seconds: MaxP95 = 0.5,
    gate_minutes: GateMinutes = 1.0,
    gate_interval: GateInterval = 15.0,
    gate_window: GateWindow = "5m",
) -> None:
    """Route traffic back to the other colour (the previous release), gated like promote."""
    target = _target(release, namespace, chart, helm, kubectl)
    gate = _gate(
        prometheus_url,
        max_error_ratio,
        max_p95_seconds,
        gate_minutes,
        gate_interval,
        gate_window,
    )
    _switch_command(
        "roll back",
        target,
        dry_run=dry_run,
        ready_timeout=ready_timeout,
        smoke=smoke,
        smoke_username=smoke_username,
        smoke_password=smoke_password,
        smoke_secret=smoke_secret,
        gate=gate,
    )


@cli.command()
def retire(
    after: Annotated[
        str,
        typer.Option(
            help="Refuse until this long after the last switch (30m, 2h, 1d; 0: now), "
            "read from the Services' ballast.io/switched-at annotation."
        ),
    ] = "1h",
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
        delay = _duration(after)
        require_cluster(target)
        values = release_values(target)
        refuse_argo(target, values, "retire")
        live, found = live_color(target, values)
        idle = other(live)
        when = switched_at(found)
        if when is not None and datetime.now(UTC) < when + delay:
            until = (when + delay).isoformat()
            raise DeployError(
                f"refusing to retire {idle}: traffic moved to {live} at "
                f"{when.isoformat()}; {idle} stays for a rollback until {until} (--after {after})"
            )
        live_tag = color_tag(values, live, _app_version(chart))
        cmd = upgrade_command(
            target,
            {
                "activeColor": live,
                f"colors.{idle}.enabled": "false",
                # promote/rollback moved them with kubectl: keep them there.
                **{key: live_tag for _, _, key in FOLLOWERS},
            },
        )
        execute(cmd, dry_run)
    except DeployError as exc:
        raise _fail(exc) from None


if __name__ == "__main__":
    cli()
