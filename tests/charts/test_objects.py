"""Assertions on the rendered objects: pods, hooks, blue-green, secrets, ingress."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.charts.conftest import (
    CHART,
    VALUE_SETS,
    Obj,
    find,
    helm,
    one,
    pod_specs,
    render,
    render_text,
)

BOTH = {"colors.green.enabled": "true"}


def _containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_pod_is_hardened_and_sized(rendered: list[Obj]) -> None:
    specs = pod_specs(rendered)
    assert len(specs) >= 5  # 4 Deployments, the migration Job (+ the test pod)
    for ref, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, ref
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, ref
        assert spec["automountServiceAccountToken"] is False, ref
        for c in _containers(spec):
            where = f"{ref} container {c['name']}"
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["runAsNonRoot"] is True, where
            assert c["resources"]["requests"]["cpu"], where
            assert c["resources"]["requests"]["memory"], where
            assert c["resources"]["limits"]["memory"], where


def test_long_running_containers_have_all_three_probes(rendered: list[Obj]) -> None:
    deployments = find(rendered, "Deployment")
    # api and ui per colour, the worker (+ the backup exporter where backups are on)
    assert len(deployments) >= 5
    paths = {
        "api": ("/healthz", "/readyz"),
        "ui": ("/_stcore/health", "/_stcore/health"),
        # served by the worker's main process once it consumes from the broker, from
        # memory (no database work behind a probe)
        "worker": ("/healthz", "/healthz"),
        "backup-exporter": ("/metrics", "/metrics"),
    }
    for d in deployments:
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        (c,) = d["spec"]["template"]["spec"]["containers"]
        live, ready = paths[component]
        assert c["startupProbe"]["httpGet"]["path"] == live
        assert c["livenessProbe"]["httpGet"]["path"] == live
        assert c["readinessProbe"]["httpGet"]["path"] == ready


def test_writable_dirs_are_emptydirs(rendered: list[Obj]) -> None:
    for ref, spec in pod_specs(rendered):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in _containers(spec):
            for m in c.get("volumeMounts", []):
                assert "emptyDir" in volumes[m["name"]], (ref, m)


def test_api_pods_wait_for_migrations_and_ui_pods_never_touch_the_db(
    rendered: list[Obj],
) -> None:
    for d in find(rendered, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        env_names = {e["name"] for c in _containers(spec) for e in c.get("env", [])}
        if d["metadata"]["name"] == "rel-ballast-backup-exporter":
            # reads the backup manifests; needs the database, never waits for a schema
            assert "initContainers" not in spec
            assert "BALLAST_DATABASE__PASSWORD" in env_names
        elif d["metadata"]["name"].startswith(
            ("rel-ballast-api", "rel-ballast-worker")
        ):
            (init,) = spec["initContainers"]
            assert init["name"] == "wait-for-migrations"
            assert init["image"] == spec["containers"][0]["image"]
            assert "BALLAST_DATABASE__PASSWORD" in env_names
        else:
            assert "initContainers" not in spec
            assert "BALLAST_DATABASE__PASSWORD" not in env_names


def test_migration_hook_is_annotated_and_ordered() -> None:
    objs = render()
    job = one(objs, "Job", "rel-ballast-migrate")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert ann["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 600
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["ballast", "db", "migrate"]
    # What the hook needs exists before it: its ServiceAccount and NetworkPolicy are hooks with a lower weight.
    for kind, name in [
        ("ServiceAccount", "rel-ballast-migrations"),
        ("NetworkPolicy", "rel-ballast-migrations"),
    ]:
        dep = one(objs, kind, name)["metadata"]["annotations"]
        assert dep["helm.sh/hook"] == ann["helm.sh/hook"]
        assert int(dep["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
    # The hook reads no ConfigMap: hooks run before the release's ordinary objects exist.
    assert "envFrom" not in c


def test_argocd_mode_renders_a_plain_job_per_release() -> None:
    values = VALUE_SETS["argocd"]
    objs = render(values)
    hooked = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objs
        if "helm.sh/hook" in (o["metadata"].get("annotations") or {})
    ]
    assert hooked == ["Pod/rel-ballast-test-connection"]
    (job,) = find(objs, "Job")
    assert job["metadata"]["name"].startswith("rel-ballast-migrate-")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"
    (next_job,) = find(render(values, {"image.tag": "0.2.0"}), "Job")
    assert next_job["metadata"]["name"] != job["metadata"]["name"]


def _index(objs: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += _diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [path]


@pytest.mark.parametrize("name", ["default", "production", "argocd"])
def test_flipping_active_color_changes_only_service_selectors(name: str) -> None:
    blue = _index(render(VALUE_SETS[name], {**BOTH, "activeColor": "blue"}))
    green = _index(render(VALUE_SETS[name], {**BOTH, "activeColor": "green"}))
    assert blue.keys() == green.keys()
    changes = {
        f"{kind}/{obj_name}{path}"
        for (kind, obj_name), obj in blue.items()
        for path in _diff(obj, green[(kind, obj_name)])
    }
    assert changes == {
        "Service/rel-ballast-api.spec.selector.ballast.io/color",
        "Service/rel-ballast-api-preview.spec.selector.ballast.io/color",
        "Service/rel-ballast-ui.spec.selector.ballast.io/color",
        "Service/rel-ballast-ui-preview.spec.selector.ballast.io/color",
    }
    assert (
        blue[("Service", "rel-ballast-ui")]["spec"]["selector"]["ballast.io/color"]
        == "blue"
    )
    assert (
        green[("Service", "rel-ballast-ui")]["spec"]["selector"]["ballast.io/color"]
        == "green"
    )
    assert (
        green[("Service", "rel-ballast-ui-preview")]["spec"]["selector"][
            "ballast.io/color"
        ]
        == "blue"
    )


def test_colours_run_their_own_tags_and_migrations_the_newest() -> None:
    objs = render(
        (),
        {
            **BOTH,
            "image.tag": "2.0.0",
            "colors.blue.tag": "1.0.0",
            "image.repository": "reg/b",
        },
    )

    def image(name: str) -> str:
        return str(
            one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0][
                "image"
            ]
        )

    assert image("rel-ballast-api-blue") == "reg/b-api:1.0.0"
    assert image("rel-ballast-ui-blue") == "reg/b-ui:1.0.0"
    assert image("rel-ballast-api-green") == "reg/b-api:2.0.0"
    job = one(objs, "Job", "rel-ballast-migrate")
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/b-api:2.0.0"
    )
    # Each colour's ui talks to its own colour's api.
    ui = one(objs, "Deployment", "rel-ballast-ui-green")["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e.get("value") for e in ui["env"]}
    assert env["BALLAST_API_URL"] == "http://rel-ballast-api-green:8000"
    svc = one(objs, "Service", "rel-ballast-api-green")
    assert svc["spec"]["selector"]["ballast.io/color"] == "green"


SECRET_ENV = {
    "BALLAST_DATABASE__PASSWORD",
    "BALLAST_SECURITY__SECRET_KEY",
    "BALLAST_S3__SECRET_ACCESS_KEY",
    "BALLAST_REDIS_URL",
}


def test_no_secret_value_is_rendered(rendered: list[Obj]) -> None:
    assert find(rendered, "Secret") == []
    for ref, spec in pod_specs(rendered):
        for c in _containers(spec):
            for e in c.get("env", []):
                if e["name"] in SECRET_ENV and "value" not in e:
                    assert "secretKeyRef" in e["valueFrom"], (ref, e)
                name = e["name"]
                assert (
                    not ("PASSWORD" in name or "SECRET" in name) or "valueFrom" in e
                ), (ref, e)
    (config,) = [
        c
        for c in find(rendered, "ConfigMap")
        if c["metadata"]["name"].endswith("-config")
    ]
    for key, value in config["data"].items():
        assert "PASSWORD" not in key, key
        assert "SECRET" not in key, key
        if key.endswith("_URL"):
            assert urlsplit(value).password is None, key


@pytest.mark.parametrize(
    "sets",
    [
        {"database.url": "postgresql://app:hunter2@db/ballast"},
        {"redis.url": "redis://:hunter2@redis:6379/0"},
    ],
)
def test_passwords_in_urls_are_refused(sets: dict[str, str]) -> None:
    proc = helm(
        "template",
        "rel",
        str(CHART),
        *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
        check=False,
    )
    assert proc.returncode != 0
    assert "must not contain a password" in proc.stderr
    assert "hunter2" not in proc.stdout


def test_secret_name_comes_from_existing_secret() -> None:
    objs = render(
        (), {"secrets.existingSecret": "mine", "ui.existingSecret": "ui-only"}
    )
    api = one(objs, "Deployment", "rel-ballast-api-blue")["spec"]["template"]["spec"][
        "containers"
    ][0]
    ui = one(objs, "Deployment", "rel-ballast-ui-blue")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert {
        e["valueFrom"]["secretKeyRef"]["name"] for e in api["env"] if "valueFrom" in e
    } == {"mine"}
    assert {
        e["valueFrom"]["secretKeyRef"]["name"] for e in ui["env"] if "valueFrom" in e
    } == {"ui-only"}


def test_ingress_has_tls_and_ui_session_affinity() -> None:
    objs = render(VALUE_SETS["production"])
    ing = one(objs, "Ingress", "rel-ballast")
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert ann["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ing["spec"]["tls"][0]["hosts"] == [
        "ballast.example.com",
        "preview.ballast.example.com",
    ]
    backends = {
        r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"]
        for r in ing["spec"]["rules"]
    }
    assert backends == {
        "ballast.example.com": "rel-ballast-ui",
        "preview.ballast.example.com": "rel-ballast-ui-preview",
    }


def test_hpa_and_pdb_per_colour_and_replicas_left_to_the_hpa() -> None:
    objs = render(VALUE_SETS["production"], BOTH)
    hpas = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in find(objs, "HorizontalPodAutoscaler")
    }
    # the backup exporter is a single replica (it serves gauges; two would double the series)
    deployments = {o["metadata"]["name"] for o in find(objs, "Deployment")} - {
        "rel-ballast-backup-exporter"
    }
    assert hpas == deployments
    assert all(
        "replicas" not in one(objs, "Deployment", name)["spec"] for name in deployments
    )
    pdbs = find(objs, "PodDisruptionBudget")
    assert {p["metadata"]["name"] for p in pdbs} == deployments
    for p in pdbs:
        d = one(objs, "Deployment", p["metadata"]["name"])
        assert p["spec"]["selector"] == d["spec"]["selector"]


def test_service_accounts_do_not_mount_tokens(rendered: list[Obj]) -> None:
    sas = find(rendered, "ServiceAccount")
    assert {s["metadata"]["name"] for s in sas} >= {
        "rel-ballast-api",
        "rel-ballast-ui",
        "rel-ballast-migrations",
        "rel-ballast-worker",
    }
    for ref, spec in pod_specs(rendered):
        if spec.get("serviceAccountName"):
            assert one(rendered, "ServiceAccount", spec["serviceAccountName"]), ref
    assert all(s["automountServiceAccountToken"] is False for s in sas)


def test_monitoring_objects_are_switches() -> None:
    assert not find(render(), "ServiceMonitor")
    objs = render(VALUE_SETS["production"], BOTH)
    sm = one(objs, "ServiceMonitor", "rel-ballast")
    (expr,) = sm["spec"]["selector"]["matchExpressions"]
    assert expr["key"] == "ballast.io/service-role"
    assert expr["operator"] == "In"
    selected = [
        s
        for s in find(objs, "Service")
        if s["metadata"]["labels"].get("ballast.io/service-role") in expr["values"]
    ]
    assert sorted(s["metadata"]["name"] for s in selected) == [
        "rel-ballast-api-blue",
        "rel-ballast-api-green",
        "rel-ballast-backup-exporter",
        "rel-ballast-ui-blue",
        "rel-ballast-ui-green",
        "rel-ballast-worker",
    ]
    # every selected Service has a port one of the endpoints scrapes
    ports = {e["port"] for e in sm["spec"]["endpoints"]}
    for s in selected:
        assert {p["name"] for p in s["spec"]["ports"]} & ports, s["metadata"]["name"]
    dash = [
        c
        for c in find(objs, "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboards")
    ]
    assert dash[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert find(objs, "PrometheusRule")


def test_helm_test_pod_checks_the_active_services() -> None:
    pod = one(render(), "Pod", "rel-ballast-test-connection")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pod["spec"]["containers"][0]["command"]
    assert "http://rel-ballast-api:8000/readyz" in args
    assert "http://rel-ballast-ui:8501/_stcore/health" in args


def test_no_container_names_an_env_variable_twice(rendered: list[Obj]) -> None:
    # Kubernetes keeps the last of two; server-side apply refuses the list.
    for ref, spec in pod_specs(rendered):
        for container in _containers(spec):
            names = [e["name"] for e in container.get("env", [])]
            twice = sorted({n for n in names if names.count(n) > 1})
            assert not twice, f"{ref} {container['name']}: {twice}"


def _repeated_keys(doc: str) -> list[str]:
    """Keys written twice directly under an `annotations:` or `labels:` mapping."""
    found: list[str] = []
    for block in ("annotations:", "labels:"):
        for part in doc.split(block)[1:]:
            lines = [ln for ln in part.split("\n")[1:] if ln.strip()]
            if not lines:
                continue
            indent = len(lines[0]) - len(lines[0].lstrip())
            keys: list[str] = []
            for line in lines:
                depth = len(line) - len(line.lstrip())
                if depth < indent:
                    break
                if depth == indent and ":" in line and not line.strip().startswith("#"):
                    keys.append(line.strip().split(":", 1)[0])
            found += sorted({f"{block}{k}" for k in keys if keys.count(k) > 1})
    return found


def test_the_repeated_key_check_can_fail() -> None:
    doc = "metadata:\n  annotations:\n    a: 1\n    b: 2\n    a: 3\n  name: x\n"
    assert _repeated_keys(doc) == ["annotations:a"]


def test_no_object_repeats_an_annotation_or_label_key() -> None:
    # YAML keeps the last of two equal keys without a word: read the text itself.
    text = render_text(VALUE_SETS["production"], {**BOTH, "ingress.enabled": "true"})
    for doc in text.split("\n---"):
        assert _repeated_keys(doc) == [], doc[:400]
