"""rollout.mode argo: one Argo Rollouts Rollout runs the ui and the api in one pod (blue-green by
Argo), the worker stays a Deployment, colour mode renders as before.

Argo's kinds are not in kubernetes-validate: they are checked against the schemas of the npm
package @kubernetes-models/argo-rollouts (generated from argo-rollouts' Go types; pinned with
tests/charts/argo/package-lock.json, installed on demand into var/tools/ like Helm), and every
other object of the argo render is validated by kubernetes-validate --strict.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.charts.conftest import (
    CHART,
    ROOT,
    VALUE_SETS,
    Obj,
    find,
    helm,
    one,
    render,
    render_text,
    require_tool,
)
from tests.charts.test_networkpolicy import (
    INGRESS,
    OTHER,
    PEERS,
    POSTGRES,
    PROMETHEUS,
    REDIS,
    S3,
    TEST,
    allowed,
    pod,
)

ARGO = {"rollout.mode": "argo"}
PROM = {**ARGO, "rollout.argo.analysis.prometheus.address": "http://prom:9090"}
PRODUCTION = VALUE_SETS["production"]
ARGO_MODELS = ROOT / "tests" / "charts" / "argo"
MODELS_DIR = ROOT / "var" / "tools" / "argo-rollouts-models"
APP_LABELS = {
    "app.kubernetes.io/name": "ballast",
    "app.kubernetes.io/instance": "rel",
    "app.kubernetes.io/component": "app",
}


def _rollout(objs: list[Obj]) -> Obj:
    return one(objs, "Rollout", "rel-ballast-app")


def _containers(objs: list[Obj]) -> dict[str, Obj]:
    spec = _rollout(objs)["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container["env"]}


# -- workloads ------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[], PRODUCTION], ids=["default", "production"])
def test_no_ui_or_api_deployment_one_rollout(values: list[Path]) -> None:
    objs = render(values, ARGO)
    deployments = {d["metadata"]["name"] for d in find(objs, "Deployment")}
    assert not {n for n in deployments if "-ui" in n or "-api" in n}
    assert [r["metadata"]["name"] for r in find(objs, "Rollout")] == ["rel-ballast-app"]
    assert set(_containers(objs)) == {"api", "ui"}


def test_the_worker_stays_a_deployment_on_image_tag() -> None:
    """Workers take jobs from the broker, not through a Service: a blue-green preview worker
    would consume live jobs anyway (charts/ballast/README.md): one Deployment, on worker.tag
    ("" follows image.tag), which nothing moves with the traffic in this mode.
    """
    objs = render(PRODUCTION, ARGO)
    worker = one(objs, "Deployment", "rel-ballast-worker")
    image = worker["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/example/ballast-jobs:0.1.0"
    assert not find(objs, "Rollout", "rel-ballast-worker")


def test_the_ui_calls_the_api_of_its_own_pod() -> None:
    containers = _containers(render((), ARGO))
    ui, api = containers["ui"], containers["api"]
    assert _env(ui)["BALLAST_API_URL"]["value"] == "http://127.0.0.1:8000"
    assert {p["containerPort"] for p in api["ports"]} == {8000, 9103}
    # The ui gets no database password, like its colour Deployment.
    assert "BALLAST_DATABASE__PASSWORD" not in _env(ui)
    assert "BALLAST_DATABASE__PASSWORD" in _env(api)
    # Its own writable directories: nothing on disk is shared with the api.
    assert {m["name"] for m in ui["volumeMounts"]} == {"ui-tmp", "ui-data"}
    assert {m["name"] for m in api["volumeMounts"]} == {"tmp", "data"}


def test_port_names_are_unique_in_the_pod_and_probes_use_them() -> None:
    containers = _containers(render((), ARGO))
    names = [p["name"] for c in containers.values() for p in c["ports"]]
    assert sorted(names) == ["api-http", "api-metrics", "ui-http", "ui-metrics"]
    for name, c in containers.items():
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] == f"{name}-http"
    assert containers["api"]["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_rollout_blue_green_fields() -> None:
    objs = render(PRODUCTION, ARGO)
    spec = _rollout(objs)["spec"]
    bg = spec["strategy"]["blueGreen"]
    assert bg["activeService"] == "rel-ballast-ui"
    assert bg["previewService"] == "rel-ballast-ui-preview"
    assert bg["autoPromotionEnabled"] is False
    # The same hour deploy.py retire waits by default before the old colour goes.
    assert bg["scaleDownDelaySeconds"] == 3600
    assert "previewReplicaCount" not in bg
    assert bg["prePromotionAnalysis"] == {
        "templates": [{"templateName": "rel-ballast-promotion"}]
    }
    assert spec["selector"]["matchLabels"] == APP_LABELS
    assert spec["template"]["metadata"]["labels"] == APP_LABELS
    # The HPA owns the replica count in production.
    assert "replicas" not in spec
    # Migrations stay a hook Job, the pods wait for them.
    assert one(objs, "Job", "rel-ballast-migrate")["metadata"]["annotations"][
        "helm.sh/hook"
    ] == ("pre-install,pre-upgrade")
    init = spec["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["wait-for-migrations"]


def test_rollout_settings_follow_the_values() -> None:
    spec = _rollout(
        render(
            (),
            {
                **PROM,
                "rollout.argo.autoPromotionEnabled": "true",
                "rollout.argo.scaleDownDelaySeconds": "600",
                "rollout.argo.previewReplicaCount": "1",
                "ui.replicas": "4",
                "api.replicas": "3",
            },
        )
    )["spec"]
    bg = spec["strategy"]["blueGreen"]
    assert bg["autoPromotionEnabled"] is True
    assert bg["scaleDownDelaySeconds"] == 600
    assert bg["previewReplicaCount"] == 1
    # ui and api scale together: the larger count.
    assert spec["replicas"] == 4
    assert bg["prePromotionAnalysis"]["args"] == [
        {"name": "preview-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}
    ]


# -- Services, HPA, PDB, ServiceMonitor ---------------------------------------------------


def test_services_select_components_only_never_a_colour() -> None:
    objs = render(PRODUCTION, ARGO)
    services = {s["metadata"]["name"]: s for s in find(objs, "Service")}
    for name in ("rel-ballast-ui", "rel-ballast-ui-preview"):
        spec = services[name]["spec"]
        # Argo Rollouts adds rollouts-pod-template-hash; the chart never sets it.
        assert spec["selector"] == APP_LABELS
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in spec["ports"]}
        assert ports == {"http": (8501, "ui-http"), "api": (8000, "api-http")}
    for svc in services.values():
        assert "ballast.io/color" not in svc["spec"]["selector"]
        assert "rollouts-pod-template-hash" not in svc["spec"]["selector"]
    # Argo switches one Service pair per Rollout: no api Service that would mix releases.
    assert "rel-ballast-api" not in services
    assert "rel-ballast-api-preview" not in services
    assert not [n for n in services if n.endswith(("-blue", "-green"))]
    # The Ingress routes the active Service's ui port, the preview host the preview one.
    ingress = one(objs, "Ingress", "rel-ballast")
    backends = [
        r["http"]["paths"][0]["backend"]["service"] for r in ingress["spec"]["rules"]
    ]
    assert backends == [
        {"name": "rel-ballast-ui", "port": {"name": "http"}},
        {"name": "rel-ballast-ui-preview", "port": {"name": "http"}},
    ]


def test_metrics_services_and_service_monitor_tell_releases_apart() -> None:
    objs = render(PRODUCTION, ARGO)
    for c, port in (("api", 9103), ("ui", 9104)):
        svc = one(objs, "Service", f"rel-ballast-{c}-metrics")
        assert svc["metadata"]["labels"]["ballast.io/service-role"] == "metrics"
        assert svc["spec"]["selector"] == APP_LABELS
        assert svc["spec"]["ports"] == [
            {
                "name": "metrics",
                "port": port,
                "targetPort": f"{c}-metrics",
                "protocol": "TCP",
            }
        ]
    monitor = one(objs, "ServiceMonitor", "rel-ballast")
    relabel = monitor["spec"]["endpoints"][0]["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_rollouts_pod_template_hash"],
        "targetLabel": "rollouts_pod_template_hash",
    } in relabel
    colours = one(render(PRODUCTION), "ServiceMonitor", "rel-ballast")
    assert "rollouts_pod_template_hash" not in json.dumps(colours)


def test_hpa_targets_the_rollout() -> None:
    objs = render(PRODUCTION, ARGO)
    hpas = find(objs, "HorizontalPodAutoscaler")
    assert {h["metadata"]["name"] for h in hpas} == {
        "rel-ballast-app",
        "rel-ballast-worker",
    }
    hpa = one(objs, "HorizontalPodAutoscaler", "rel-ballast-app")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": "rel-ballast-app",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    targets = {
        m["containerResource"]["container"]: m["containerResource"]["target"]
        for m in hpa["metrics"]
    }
    assert targets == {
        "api": {"type": "Utilization", "averageUtilization": 70},
        "ui": {"type": "Utilization", "averageUtilization": 70},
    }
    # Only the components whose autoscaling is on add their container.
    only_ui = render(
        (),
        {**ARGO, "ui.autoscaling.enabled": "true", "ui.autoscaling.maxReplicas": "5"},
    )
    spec = one(only_ui, "HorizontalPodAutoscaler", "rel-ballast-app")["spec"]
    assert [m["containerResource"]["container"] for m in spec["metrics"]] == ["ui"]
    assert spec["maxReplicas"] == 5


def test_one_pdb_over_the_app_pods() -> None:
    objs = render(
        (),
        {
            **ARGO,
            "api.podDisruptionBudget.maxUnavailable": "2",
            "ui.podDisruptionBudget.maxUnavailable": "1",
        },
    )
    names = {p["metadata"]["name"] for p in find(objs, "PodDisruptionBudget")}
    assert names == {"rel-ballast-app", "rel-ballast-worker"}
    pdb = one(objs, "PodDisruptionBudget", "rel-ballast-app")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": APP_LABELS}}


# -- the promotion analysis -----------------------------------------------------------


def _metrics(objs: list[Obj]) -> dict[str, Obj]:
    template = one(objs, "AnalysisTemplate", "rel-ballast-promotion")
    return {m["name"]: m for m in template["spec"]["metrics"]}


def test_analysis_runs_the_smoke_test_job_against_the_preview() -> None:
    objs = render(PRODUCTION, ARGO)
    metrics = _metrics(objs)
    assert set(metrics) == {"smoke-test"}
    smoke = metrics["smoke-test"]
    assert (smoke["count"], smoke["failureLimit"]) == (1, 0)
    job = smoke["provider"]["job"]["spec"]
    assert job["backoffLimit"] == 0
    pod_spec = job["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    (container,) = pod_spec["containers"]
    assert container["image"] == "ghcr.io/example/ballast-api:0.1.0"
    script = (CHART / "files" / "smoke_test.py").read_text()
    assert container["command"] == [
        "python",
        "-c",
        script,
        "http://rel-ballast-ui-preview:8000",
        "http://rel-ballast-ui-preview:8501",
    ]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert secrets == {
        "BALLAST_SMOKE_USERNAME": {"name": "rel-ballast-smoke-test", "key": "username"},
        "BALLAST_SMOKE_PASSWORD": {"name": "rel-ballast-smoke-test", "key": "password"},
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    labels = job["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "smoke-test"


def test_analysis_adds_the_prometheus_gate_when_configured() -> None:
    objs = render(PRODUCTION, {**PROM, "rollout.argo.analysis.prometheus.count": "4"})
    template = one(objs, "AnalysisTemplate", "rel-ballast-promotion")
    assert template["spec"]["args"] == [{"name": "preview-hash"}]
    metrics = _metrics(objs)
    assert set(metrics) == {"smoke-test", "api-error-ratio", "api-p95"}
    for name, limit in (("api-error-ratio", "0.01"), ("api-p95", "0.5")):
        m = metrics[name]
        assert (m["interval"], m["count"], m["failureLimit"]) == ("30s", 4, 0)
        assert m["successCondition"] == (
            f"len(result) > 0 && !isNaN(result[0]) && result[0] <= {limit}"
        )
        prom = m["provider"]["prometheus"]
        assert prom["address"] == "http://prom:9090"
        assert 'rollouts_pod_template_hash="{{args.preview-hash}}"' in prom["query"]
        assert 'namespace="ballast", service="api"' in prom["query"]
    assert (
        'status=~"5.."' in metrics["api-error-ratio"]["provider"]["prometheus"]["query"]
    )
    assert (
        "histogram_quantile(0.95"
        in metrics["api-p95"]["provider"]["prometheus"]["query"]
    )


def test_analysis_off_removes_template_and_reference() -> None:
    objs = render((), {**ARGO, "rollout.argo.analysis.enabled": "false"})
    assert not find(objs, "AnalysisTemplate")
    assert "prePromotionAnalysis" not in _rollout(objs)["spec"]["strategy"]["blueGreen"]
    assert not find(objs, "NetworkPolicy", "rel-ballast-smoke-test")


# -- NetworkPolicies (evaluated rule by rule, like test_networkpolicy.py) ----------------

APP = pod("app")
SMOKE = pod("smoke-test")


@pytest.fixture(params=["default", "production"])
def argo_policies(request: pytest.FixtureRequest) -> list[Obj]:
    values = VALUE_SETS[request.param] or [PEERS]
    return find(render(values, ARGO), "NetworkPolicy")


@pytest.mark.parametrize(
    ("src", "dst", "port"),
    [
        (INGRESS, APP, 8501),
        (APP, POSTGRES, 5432),
        (APP, REDIS, 6379),
        (PROMETHEUS, APP, 9104),
        (PROMETHEUS, APP, 9103),
        (TEST, APP, 8501),
        (TEST, APP, 8000),
        (SMOKE, APP, 8000),
        (SMOKE, APP, 8501),
    ],
)
def test_argo_flows_allowed(
    argo_policies: list[Obj], src: object, dst: object, port: int
) -> None:
    assert allowed(argo_policies, src, dst, port)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("src", "dst", "port"),
    [
        (INGRESS, APP, 8000),  # the browser reaches the api only through the ui
        (INGRESS, APP, 9104),
        (OTHER, APP, 8000),
        (OTHER, APP, 8501),
        (PROMETHEUS, APP, 8000),
        (SMOKE, POSTGRES, 5432),
        (APP, SMOKE, 8000),
    ],
)
def test_argo_flows_denied(
    argo_policies: list[Obj], src: object, dst: object, port: int
) -> None:
    assert not allowed(argo_policies, src, dst, port)  # type: ignore[arg-type]


def test_argo_object_store_flow_with_an_endpoint() -> None:
    policies = find(render(PRODUCTION, ARGO), "NetworkPolicy")
    assert allowed(policies, APP, S3, 443)
    assert not allowed(policies, SMOKE, S3, 443)


def test_argo_policies_replace_the_ui_and_api_ones(argo_policies: list[Obj]) -> None:
    names = {p["metadata"]["name"] for p in argo_policies}
    assert {"rel-ballast-app", "rel-ballast-smoke-test"} <= names
    assert not {"rel-ballast-ui", "rel-ballast-api"} & names


# -- guards and colour mode -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"colors.green.enabled": "true"},
            "colors.green is a rollout.mode colors setting",
        ),
        ({"colors.blue.tag": "1.0.0"}, "colors.blue is a rollout.mode colors setting"),
        ({"ui.enabled": "false"}, "ui.enabled and api.enabled must both be true"),
        ({"ui.metricsPort": "9103"}, "must all differ"),
    ],
)
def test_argo_mode_refuses_what_cannot_work(sets: dict[str, str], message: str) -> None:
    proc = helm(
        *[
            "template",
            "rel",
            str(CHART),
            "--set",
            "rollout.mode=argo",
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
        ],
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr


def test_schema_rejects_an_unknown_mode() -> None:
    proc = helm(
        "template", "rel", str(CHART), "--set", "rollout.mode=flagger", check=False
    )
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower()


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_colour_mode_is_the_default_and_renders_no_argo_object(name: str) -> None:
    sets = {"colors.green.enabled": "true"}
    default = render_text(VALUE_SETS[name], sets)
    assert render_text(VALUE_SETS[name], {**sets, "rollout.mode": "colors"}) == default
    objs = render(VALUE_SETS[name], sets)
    assert not [o for o in objs if o["apiVersion"].startswith("argoproj.io/")]
    assert find(objs, "Deployment", "rel-ballast-api-blue")
    assert find(objs, "Deployment", "rel-ballast-ui-green")
    assert not find(objs, "NetworkPolicy", "rel-ballast-app")


# -- validation -------------------------------------------------------------------------


@cache
def argo_validator() -> Path:
    """validate.mjs with its pinned node_modules in var/tools/ (npm ci on first use)."""
    node = require_tool("node", "apt-get install nodejs npm")
    npm = require_tool("npm", "apt-get install npm")
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copyfile(ARGO_MODELS / name, MODELS_DIR / name)
    marker = MODELS_DIR / "node_modules" / "@kubernetes-models" / "argo-rollouts"
    lock = (ARGO_MODELS / "package-lock.json").read_text()
    stamp = MODELS_DIR / "installed-lock.json"
    # Test workers may get here at once: one installs, the others wait for it.
    with (MODELS_DIR / "install.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not marker.exists() or not stamp.exists() or stamp.read_text() != lock:
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=MODELS_DIR,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            if proc.returncode != 0:
                pytest.fail(
                    f"npm ci of {ARGO_MODELS} failed:\n{proc.stdout}{proc.stderr}"
                )
            stamp.write_text(lock)
    assert node
    return MODELS_DIR / "validate.mjs"


def validate_argo(docs: list[Obj]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(argo_validator())],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("values", [[], PRODUCTION], ids=["default", "production"])
def test_argo_objects_match_the_rollouts_schemas(values: list[Path]) -> None:
    docs = [
        o for o in render(values, PROM) if o["apiVersion"].startswith("argoproj.io/")
    ]
    proc = validate_argo(docs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(proc.stdout.split("\n")) == sorted(
        ["ok AnalysisTemplate/rel-ballast-promotion", "ok Rollout/rel-ballast-app", ""]
    )


def test_the_rollouts_schema_check_can_fail() -> None:
    rollout = _rollout(render((), ARGO))
    rollout["spec"]["strategy"]["blueGreen"]["autoPromotionEnabled"] = "no"
    del rollout["spec"]["strategy"]["blueGreen"]["activeService"]
    rollout["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"
    ] = "http"
    proc = validate_argo([rollout])
    assert proc.returncode == 1
    for error in (
        "autoPromotionEnabled must be boolean",
        "must have required property activeService",
        "containerPort must be integer",
    ):
        assert error in proc.stdout


@pytest.mark.parametrize("kube_version", ["1.28.0", "1.34.0"])
@pytest.mark.parametrize("values", [[], PRODUCTION], ids=["default", "production"])
def test_everything_else_validates_strictly(
    values: list[Path], kube_version: str, tmp_path: Path
) -> None:
    text = render_text(values, PROM, kube_version=kube_version)
    manifest = tmp_path / "argo.yaml"
    manifest.write_text(text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
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
    assert "ERROR" not in out
    # Only the CRD kinds go unvalidated: Argo's (checked above) and the Prometheus Operator's.
    unknown = {
        line.split("kind ")[1].split(" with api version ")[1].split(" ")[0]
        for line in out.splitlines()
        if "Couldn't find schema" in line
    }
    assert unknown <= {"argoproj.io/v1alpha1", "monitoring.coreos.com/v1"}
    for ref in (
        "service/rel-ballast-ui",
        "service/rel-ballast-ui-preview",
        (
            "horizontalpodautoscaler/rel-ballast-app"
            if values
            else "poddisruptionbudget/rel-ballast-app"
        ),
        "networkpolicy/rel-ballast-app",
        "networkpolicy/rel-ballast-smoke-test",
        "deployment/rel-ballast-worker",
    ):
        assert f"passed for resource {ref}" in out, ref


@pytest.mark.parametrize("values", [[], PRODUCTION], ids=["default", "production"])
def test_helm_lint_strict_in_argo_mode(values: list[Path]) -> None:
    args = ["lint", "--strict", str(CHART), "--set", "rollout.mode=argo"]
    for path in values:
        args += ["-f", str(path)]
    proc = helm(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
