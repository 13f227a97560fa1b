"""The Celery worker, the backup CronJobs and exporter, and every values switch."""

from __future__ import annotations

import pytest
import yaml

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

PROD = VALUE_SETS["production"]


def _container(spec: Obj) -> Obj:
    (c,) = spec["containers"]
    return c


def _env(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


# --- worker -----------------------------------------------------------------------------


def test_worker_runs_the_cli_with_metrics_and_probes() -> None:
    objs = render(PROD)
    d = one(objs, "Deployment", "rel-ballast-worker")
    spec = d["spec"]["template"]["spec"]
    c = _container(spec)
    assert c["image"] == "ghcr.io/example/ballast-jobs:0.1.0"
    assert c["command"] == ["ballast", "jobs", "worker"]
    assert c["args"] == ["--queues", "default,imports,analysis", "--concurrency", "4"]
    env = _env(c)
    assert env["BALLAST_JOBS__METRICS_PORT"]["value"] == "9101"
    assert env["BALLAST_JOBS__BROKER_URL"]["valueFrom"]["secretKeyRef"]["optional"]
    (port,) = c["ports"]
    assert port == {"name": "metrics", "containerPort": 9101, "protocol": "TCP"}
    config = one(objs, "ConfigMap", "rel-ballast-config")["data"]
    assert config["BALLAST_JOBS__BROKER_URL"] == config["BALLAST_REDIS_URL"]
    assert config["BALLAST_JOBS__SOFT_TIME_LIMIT"] == "1800"
    svc = one(objs, "Service", "rel-ballast-worker")
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    # Probes read memory only (/healthz), never the database counts behind /metrics.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}


@pytest.mark.parametrize(
    ("soft", "grace", "expected"),
    [("1800", "10", 1900), ("60", "0", 150), ("600", "5", 695)],
)
def test_worker_grace_period_outlasts_the_hard_time_limit(
    soft: str, grace: str, expected: int
) -> None:
    sets = {"worker.softTimeLimitSeconds": soft, "worker.cancelGraceSeconds": grace}
    objs = render((), sets)
    spec = one(objs, "Deployment", "rel-ballast-worker")["spec"]["template"]["spec"]
    hard = int(soft) + int(grace) + 30  # celeryconfig: soft + cancel grace + 30
    assert spec["terminationGracePeriodSeconds"] == expected > hard
    config = one(objs, "ConfigMap", "rel-ballast-config")["data"]
    assert config["BALLAST_JOBS__SOFT_TIME_LIMIT"] == soft
    assert config["BALLAST_JOBS__CANCEL_GRACE_S"] == grace


def test_worker_grace_period_too_short_is_refused() -> None:
    ok = render((), {"worker.terminationGracePeriodSeconds": "3600"})
    spec = one(ok, "Deployment", "rel-ballast-worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 3600
    proc = helm(
        "template",
        "rel",
        str(CHART),
        "--set",
        "worker.terminationGracePeriodSeconds=1800",
        check=False,
    )
    assert proc.returncode != 0
    assert "must be longer than the hard time limit" in proc.stderr


def test_worker_needs_redis() -> None:
    proc = helm("template", "rel", str(CHART), "--set", "redis.url=", check=False)
    assert proc.returncode != 0
    assert "worker.enabled needs redis.url" in proc.stderr
    objs = render((), {"redis.url": "", "worker.enabled": "false"})
    assert not find(objs, "Deployment", "rel-ballast-worker")
    assert (
        "BALLAST_JOBS__BROKER_URL"
        not in one(objs, "ConfigMap", "rel-ballast-config")["data"]
    )


def test_worker_pdb_and_hpa() -> None:
    objs = render(PROD)
    d = one(objs, "Deployment", "rel-ballast-worker")
    assert "replicas" not in d["spec"]
    hpa = one(objs, "HorizontalPodAutoscaler", "rel-ballast-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-ballast-worker"
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["value"] == 1
    pdb = one(objs, "PodDisruptionBudget", "rel-ballast-worker")
    assert pdb["spec"]["selector"] == d["spec"]["selector"]
    plain = render((), {"worker.podDisruptionBudget.enabled": "false"})
    assert not find(plain, "PodDisruptionBudget", "rel-ballast-worker")
    assert one(plain, "Deployment", "rel-ballast-worker")["spec"]["replicas"] == 2
    assert not find(plain, "HorizontalPodAutoscaler", "rel-ballast-worker")


# --- backups ----------------------------------------------------------------------------

RUNS = {
    "incremental": (["backup", "create", "--kind", "incremental"], "17 * * * *"),
    "full": (["backup", "create", "--kind", "full"], "5 2 * * *"),
    "drill": (["backup", "drill"], "40 4 * * *"),
    "prune": (["backup", "prune"], "20 3 * * *"),
}


def test_backup_cronjobs() -> None:
    objs = render(PROD)
    jobs = find(objs, "CronJob")
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(
        f"rel-ballast-backup-{run}" for run in RUNS
    )
    for run, (args, schedule) in RUNS.items():
        cj = one(objs, "CronJob", f"rel-ballast-backup-{run}")
        spec = cj["spec"]
        assert spec["schedule"] == schedule
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["successfulJobsHistoryLimit"] == 3
        assert spec["failedJobsHistoryLimit"] == 3
        assert spec["startingDeadlineSeconds"] == 600
        job = spec["jobTemplate"]["spec"]
        assert job["backoffLimit"] == 1
        assert job["activeDeadlineSeconds"] >= 1800
        pod = job["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        c = _container(pod)
        assert c["image"] == "ghcr.io/example/ballast-backup:0.1.0"
        assert [*c["command"], *c["args"]] == ["ballast", *args]
        ref = _env(c)["BALLAST_S3__SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
        # backups cannot work without the object store: the key is required, from the Secret
        assert ref == {"name": "ballast-prod", "key": "s3-secret-access-key"}
        assert {"configMapRef": {"name": "rel-ballast-config"}} in c["envFrom"]
        env = _env(c)
        assert env["BALLAST_BACKUP__PREFIX"]["value"] == "backups"
        assert env["BALLAST_BACKUP__KEEP_DAILY"]["value"] == "7"


def test_backup_exporter() -> None:
    objs = render(PROD)
    d = one(objs, "Deployment", "rel-ballast-backup-exporter")
    assert d["spec"]["replicas"] == 1
    c = _container(d["spec"]["template"]["spec"])
    assert [*c["command"], *c["args"]] == [
        "ballast",
        "backup",
        "exporter",
        "--host",
        "0.0.0.0",
        "--port",
        "9102",
    ]
    assert c["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    svc = one(objs, "Service", "rel-ballast-backup-exporter")
    assert svc["metadata"]["labels"]["ballast.io/service-role"] == "metrics"
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]


# --- which release the background work runs ------------------------------------------


def _images(objs: list[Obj]) -> dict[str, list[str]]:
    """kind/name -> the images of its init containers and containers."""
    out = {}
    for ref, spec in pod_specs(objs):
        containers = [*spec.get("initContainers", []), *spec["containers"]]
        out[ref] = [c["image"] for c in containers]
    return out


def _tags(images: list[str]) -> set[str]:
    return {image.rsplit(":", 1)[1] for image in images}


def test_worker_and_exporter_follow_image_tag_by_default() -> None:
    """worker.tag and backup.exporter.tag are "" by default: the render is what it was."""
    images = _images(render(PROD, {"image.tag": "2.0.0"}))
    assert _tags(images["Deployment/rel-ballast-worker"]) == {"2.0.0"}
    assert _tags(images["Deployment/rel-ballast-backup-exporter"]) == {"2.0.0"}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["worker"]["tag"] == defaults["backup"]["exporter"]["tag"] == ""
    # A pin on the tag image.tag names renders byte for byte what no pin renders.
    sets = {"image.tag": "2.0.0", "colors.green.enabled": "true"}
    pinned = {**sets, "worker.tag": "2.0.0", "backup.exporter.tag": "2.0.0"}
    assert render_text(PROD, pinned) == render_text(PROD, sets)


def test_stage_pins_the_worker_and_the_exporter_to_the_live_release() -> None:
    """What `deploy.py stage --tag 2.0.0` sets with blue live on 1.0.0: the staged colour
    runs 2.0.0, and so do the migration Job and the backup CronJobs; the worker (its
    wait-for-migrations init container too) and the exporter stay on the live 1.0.0.
    """
    sets = {
        "image.tag": "2.0.0",
        "colors.blue.tag": "1.0.0",
        "colors.green.enabled": "true",
        "colors.green.tag": "2.0.0",
        "worker.tag": "1.0.0",
        "backup.exporter.tag": "1.0.0",
    }
    objs = render(PROD, sets)
    images = _images(objs)
    worker = images["Deployment/rel-ballast-worker"]
    assert len(worker) == 2  # wait-for-migrations + worker
    assert worker == ["ghcr.io/example/ballast-jobs:1.0.0"] * 2
    assert images["Deployment/rel-ballast-backup-exporter"] == [
        "ghcr.io/example/ballast-backup:1.0.0"
    ]
    assert _tags(images["Deployment/rel-ballast-api-blue"]) == {"1.0.0"}
    assert _tags(images["Deployment/rel-ballast-api-green"]) == {"2.0.0"}
    assert _tags(images["Deployment/rel-ballast-ui-green"]) == {"2.0.0"}
    (migrate,) = [ref for ref in images if ref.startswith("Job/")]
    assert _tags(images[migrate]) == {"2.0.0"}
    cronjobs = [ref for ref in images if ref.startswith("CronJob/")]
    assert cronjobs
    for ref in cronjobs:
        assert _tags(images[ref]) == {"2.0.0"}, ref
    # Staging restarts no background pod: the worker and the exporter render as before it.
    before = render(PROD, {"image.tag": "1.0.0", "colors.blue.tag": "1.0.0"})
    for name in ("rel-ballast-worker", "rel-ballast-backup-exporter"):
        assert one(objs, "Deployment", name) == one(before, "Deployment", name), name
    # Each pin moves only its own workload.
    only_worker = _images(render(PROD, {"image.tag": "2.0.0", "worker.tag": "1.0.0"}))
    assert _tags(only_worker["Deployment/rel-ballast-backup-exporter"]) == {"2.0.0"}


def test_backups_need_an_object_store() -> None:
    proc = helm(
        "template", "rel", str(CHART), "--set", "backup.enabled=true", check=False
    )
    assert proc.returncode != 0
    assert "backup.enabled needs s3.endpointUrl" in proc.stderr


@pytest.mark.parametrize("run", sorted(RUNS))
def test_each_backup_run_is_a_switch(run: str) -> None:
    objs = render(PROD, {f"backup.{run}.enabled": "false"})
    names = {j["metadata"]["name"] for j in find(objs, "CronJob")}
    assert names == {f"rel-ballast-backup-{r}" for r in RUNS if r != run}


PITR = {
    "backup.pitr.enabled": "true",
    "backup.pitr.tlsSecret": "pgbackrest-client",
    "backup.pitr.pgHost": "pg-0.pg",
}
PITR_RUNS = {
    "pitr-full": (["backup", "pitr", "create", "--kind", "full"], "30 1 * * 0"),
    "pitr-diff": (["backup", "pitr", "create", "--kind", "diff"], "30 1 * * 1-6"),
    "pitr-verify": (["backup", "pitr", "verify"], "10 5 * * *"),
}


def test_pitr_cronjobs_reach_the_database_pods_pgbackrest_server() -> None:
    objs = render(PROD, PITR)
    names = {j["metadata"]["name"] for j in find(objs, "CronJob")}
    assert names == {f"rel-ballast-backup-{r}" for r in [*RUNS, *PITR_RUNS]}
    for run, (args, schedule) in PITR_RUNS.items():
        cj = one(objs, "CronJob", f"rel-ballast-backup-{run}")
        assert cj["spec"]["schedule"] == schedule
        assert cj["spec"]["concurrencyPolicy"] == "Forbid"
        pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        c = _container(pod)
        assert [*c["command"], *c["args"]] == ["ballast", *args]
        env = _env(c)
        assert env["BALLAST_BACKUP__PITR__PG_HOST"]["value"] == "pg-0.pg"
        assert env["BALLAST_BACKUP__PITR__PG_HOST_PORT"]["value"] == "8432"
        assert (
            env["BALLAST_BACKUP__PITR__PG_HOST_CERT_FILE"]["value"]
            == "/etc/ballast/pgbackrest-tls/tls.crt"
        )
        # the config file is written at run time into the writable scratch volume
        assert env["BALLAST_BACKUP__PITR__CONFIG_FILE"]["value"].startswith("/tmp/")
        ref = env["BALLAST_S3__SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "s3-secret-access-key"
        (tls,) = [v for v in pod["volumes"] if v["name"] == "pgbackrest-tls"]
        assert tls["secret"]["secretName"] == "pgbackrest-client"
        assert {
            "name": "pgbackrest-tls",
            "mountPath": "/etc/ballast/pgbackrest-tls",
            "readOnly": True,
        } in c["volumeMounts"]
    # the logical backups carry none of it
    plain = _container(
        one(objs, "CronJob", "rel-ballast-backup-full")["spec"]["jobTemplate"]["spec"][
            "template"
        ]["spec"]
    )
    assert "BALLAST_BACKUP__PITR__PG_HOST" not in _env(plain)
    db = one(objs, "ConfigMap", "rel-ballast-pgbackrest-db")["data"]
    assert "repo1-s3-endpoint=s3.eu-central-1.amazonaws.com" in db["pgbackrest.conf"]
    assert "tls-server-auth=ballast-backup=ballast" in db["pgbackrest.conf"]
    assert "secret" not in db["pgbackrest.conf"].lower()
    assert (
        "archive_command = 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf "
        "--stanza=ballast archive-push %p'" in db["postgresql.conf"]
    )
    np = one(objs, "NetworkPolicy", "rel-ballast-backup")
    ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
    assert 8432 in ports


def test_pitr_is_off_by_default_and_refuses_half_configurations() -> None:
    objs = render(PROD)
    assert not find(objs, "ConfigMap", "rel-ballast-pgbackrest-db")
    args = [f"{k}={v}" for k, v in PITR.items() if k != "backup.pitr.tlsSecret"]
    sets = [x for a in args for x in ("--set", a)]
    values = [x for v in PROD for x in ("-f", str(v))]
    proc = helm("template", "rel", str(CHART), *values, *sets, check=False)
    assert proc.returncode != 0
    assert "backup.pitr.enabled needs backup.pitr.tlsSecret" in proc.stderr
    proc = helm(
        "template", "rel", str(CHART), *values, *sets,
        "--set", "backup.pitr.tlsSecret=x",
        "--set", "backup.pitr.s3Endpoint=http://minio:9000",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "needs an https object store" in proc.stderr


# --- switches ---------------------------------------------------------------------------


def _names(objs: list[Obj]) -> set[str]:
    return {f"{o['kind']}/{o['metadata']['name']}" for o in objs}


# (values switched off on top of the production set, objects that must disappear)
SWITCHES = [
    ({"metrics.serviceMonitor.enabled": "false"}, {"ServiceMonitor/rel-ballast"}),
    ({"metrics.prometheusRule.enabled": "false"}, {"PrometheusRule/rel-ballast"}),
    ({"metrics.dashboards.enabled": "false"}, {"ConfigMap/rel-ballast-dashboards"}),
    (
        {"worker.enabled": "false"},
        {
            "Deployment/rel-ballast-worker",
            "Service/rel-ballast-worker",
            "PodDisruptionBudget/rel-ballast-worker",
            "HorizontalPodAutoscaler/rel-ballast-worker",
            "ServiceAccount/rel-ballast-worker",
            "NetworkPolicy/rel-ballast-worker",
        },
    ),
    (
        {"backup.enabled": "false"},
        {
            "CronJob/rel-ballast-backup-full",
            "CronJob/rel-ballast-backup-incremental",
            "CronJob/rel-ballast-backup-drill",
            "CronJob/rel-ballast-backup-prune",
            "Deployment/rel-ballast-backup-exporter",
            "Service/rel-ballast-backup-exporter",
            "ServiceAccount/rel-ballast-backup",
            "NetworkPolicy/rel-ballast-backup",
            "NetworkPolicy/rel-ballast-backup-exporter",
        },
    ),
    (
        {"backup.exporter.enabled": "false"},
        {
            "Deployment/rel-ballast-backup-exporter",
            "Service/rel-ballast-backup-exporter",
            "NetworkPolicy/rel-ballast-backup-exporter",
        },
    ),
    (
        {"tests.enabled": "false"},
        {"Pod/rel-ballast-test-connection", "NetworkPolicy/rel-ballast-test"},
    ),
    (
        {"ingress.enabled": "false"},
        # the ui's security headers live in a ConfigMap the ingress controller reads
        {"Ingress/rel-ballast", "ConfigMap/rel-ballast-ui-headers"},
    ),
]


@pytest.mark.parametrize(
    ("sets", "gone"), SWITCHES, ids=[next(iter(s)) for s, _ in SWITCHES]
)
def test_switch_removes_exactly_its_objects(
    sets: dict[str, str], gone: set[str]
) -> None:
    on = _names(render(PROD))
    off = _names(render(PROD, sets))
    assert on - off == gone
    assert off <= on


def test_rules_follow_the_components() -> None:
    groups = {
        g["name"]
        for g in one(
            render(PROD, {"worker.enabled": "false", "backup.enabled": "false"}),
            "PrometheusRule",
            "rel-ballast",
        )["spec"]["groups"]
    }
    assert groups == {
        "ballast.api",
        "ballast.cache",
        "ballast.security",
        "ballast.availability",
        "ballast.ui",
    }
    groups = {
        g["name"]
        for g in one(render(PROD), "PrometheusRule", "rel-ballast")["spec"]["groups"]
    }
    assert groups == {
        "ballast.api",
        "ballast.cache",
        "ballast.security",
        "ballast.availability",
        "ballast.ui",
        "ballast.jobs",
        "ballast.backup",
    }
