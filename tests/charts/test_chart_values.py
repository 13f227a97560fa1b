"""Ingress limits, the password guard, DNS and server egress, pod extras, job-mode retries.

Each value is rendered and the objects it must produce (or the render's refusal) are checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import (
    VALUE_SETS,
    Obj,
    find,
    helm,
    one,
    pod_specs,
    render,
    template_args,
)
from tests.charts.test_networkpolicy import (
    API,
    DNS,
    UI,
    WORKER,
    Peer,
    allowed,
)

PROD = VALUE_SETS["production"]
PEERS = Path(__file__).with_name("values") / "peers.yaml"
NGINX = "nginx.ingress.kubernetes.io/"


def _refused(values: list[Path], sets: dict[str, str]) -> str:
    """The render's error; fails the test when the render succeeds."""
    proc = helm(*template_args(values, sets), check=False)
    assert proc.returncode != 0, f"rendered although {sets} should be refused"
    assert "hunter2" not in proc.stdout
    return proc.stderr


def _render_json(values: list[Path], sets: dict[str, Any]) -> list[Obj]:
    """Render with typed values (--set-json: floats and strings stay what they are)."""
    args = template_args(values)
    for key, value in sets.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def _config(objs: list[Obj]) -> dict[str, str]:
    return one(objs, "ConfigMap", "rel-ballast-config")["data"]


# -- Ingress ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mb", "body", "setting"),
    [(None, "201m", "200"), (1.5, "3m", "1.5"), (40, "41m", "40")],
)
def test_ingress_body_size_follows_the_upload_limit(
    mb: float | None, body: str, setting: str
) -> None:
    # ingress-nginx refuses bodies over 1 MiB unless told; the api's limit, the ui's
    # Streamlit limit and the proxy all follow config.maxUploadMB (plus multipart framing).
    objs = _render_json(PROD, {} if mb is None else {"config.maxUploadMB": mb})
    ann = one(objs, "Ingress", "rel-ballast")["metadata"]["annotations"]
    assert ann[NGINX + "proxy-body-size"] == body
    assert _config(objs)["BALLAST_DATASETS__MAX_UPLOAD_MB"] == setting
    # The websocket timeouts and the cookie affinity the ui's uploads need stay.
    assert ann[NGINX + "proxy-read-timeout"] == "3600"
    assert ann[NGINX + "proxy-send-timeout"] == "3600"
    assert ann[NGINX + "affinity"] == "cookie"
    assert ann[NGINX + "affinity-mode"] == "persistent"


def test_an_annotation_of_the_operator_replaces_the_charts_own() -> None:
    key = (NGINX + "proxy-body-size").replace(".", "\\.")
    objs = render(PROD, {f"ingress.annotations.{key}": "1g"})
    ann = one(objs, "Ingress", "rel-ballast")["metadata"]["annotations"]
    assert ann[NGINX + "proxy-body-size"] == "1g"


def test_several_hosts_route_to_the_live_ui_with_tls() -> None:
    objs = render(
        PROD,
        {
            "ingress.extraHosts[0]": "app.example.org",
            "ingress.extraHosts[1]": "x.example.org",
        },
    )
    ing = one(objs, "Ingress", "rel-ballast")
    hosts = ["ballast.example.com", "app.example.org", "x.example.org"]
    assert ing["spec"]["tls"][0]["hosts"] == [*hosts, "preview.ballast.example.com"]
    backends = {
        r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"]
        for r in ing["spec"]["rules"]
    }
    assert backends == {
        **dict.fromkeys(hosts, "rel-ballast-ui"),
        "preview.ballast.example.com": "rel-ballast-ui-preview",
    }


# -- the password guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sets",
    [
        {"database.url": "postgresql://db/ballast?user=app&password=hunter2"},
        {
            "database.url": "postgresql://app@db/ballast?sslmode=require&password=hunter2"
        },
        {"redis.url": "redis://redis:6379/0?password=hunter2"},
        {"s3.endpointUrl": "https://key:hunter2@s3.example.com"},
        {"config.extra.BALLAST_DATABASE__PASSWORD": "hunter2"},
        {"config.extra.BALLAST_WEBHOOKS__SOURCES__GH__SECRET": "hunter2"},
        {"config.extra.BALLAST_OUTBOUND__URL": "https://svc/?pwd=hunter2"},
        {"config.extra.BALLAST_OTHER_URL": "postgresql://app:hunter2@db/x"},
        {"api.env.BALLAST_S3__SECRET_ACCESS_KEY": "hunter2"},
        {"worker.env.MY_TOKEN": "hunter2"},
        {"backup.env.BALLAST_BACKUP__PITR__CIPHER_PASS": "hunter2"},
        {
            "ui.extraEnv[0].name": "UPSTREAM",
            "ui.extraEnv[0].value": "https://u:hunter2@h",
        },
        {"api.extraEnv[0].name": "API_KEY", "api.extraEnv[0].value": "hunter2"},
    ],
)
def test_the_password_guard_refuses_literal_secrets(sets: dict[str, str]) -> None:
    err = _refused(PROD, sets)
    assert "hunter2" not in err
    assert "password" in err or "looks like a secret" in err


def test_the_password_guard_lets_references_and_plain_values_through() -> None:
    ref = {"secretKeyRef": {"name": "ballast-prod", "key": "api-key"}}
    objs = _render_json(
        PROD,
        {
            "api.extraEnv": [{"name": "API_KEY", "valueFrom": ref}],
            "api.env.BALLAST_SECURITY__PASSWORD_HASH_WORKERS": "4",
            "config.extra.BALLAST_DATASETS__PAGE_SIZE": "50",
            "database.url": "postgresql://app@db/ballast?sslmode=require",
        },
    )
    assert _config(objs)["BALLAST_DATASETS__PAGE_SIZE"] == "50"


def test_config_extra_cannot_repeat_a_setting_of_the_chart() -> None:
    err = _refused(PROD, {"config.extra.BALLAST_DATASETS__MAX_UPLOAD_MB": "five"})
    assert "config.extra.BALLAST_DATASETS__MAX_UPLOAD_MB is set by the chart" in err


# -- DNS and server egress ------------------------------------------------------------------


@pytest.mark.parametrize("values", [[PEERS], PROD])
def test_dns_goes_to_kube_dns_only(values: list[Path]) -> None:
    policies = find(render(values, {"colors.green.enabled": "true"}), "NetworkPolicy")
    for src in (UI, API, WORKER):
        for proto in ("UDP", "TCP"):
            assert allowed(policies, src, DNS, 53, proto)
            assert not allowed(policies, src, Peer(ip="8.8.8.8"), 53, proto)
            assert not allowed(policies, src, Peer({"k8s-app": "kube-dns"}), 53, proto)
        fake_dns = Peer({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "x"})
        assert not allowed(policies, src, fake_dns, 53, "UDP")


def test_an_empty_dns_peer_list_is_refused() -> None:
    err = _refused([PEERS], {"networkPolicy.dnsPeers": "null"})
    assert "networkPolicy.dnsPeers is empty" in err


@pytest.mark.parametrize(
    ("what", "sets"),
    [
        ("databasePeers", {}),
        ("redisPeers", {}),
        ("s3Peers", {"s3.endpointUrl": "https://s3.example.com"}),
    ],
)
def test_prod_refuses_open_server_egress(what: str, sets: dict[str, str]) -> None:
    err = _refused([PEERS], {f"networkPolicy.{what}": "null", **sets})
    assert f"networkPolicy.{what} is empty with config.env=prod" in err
    # Outside prod, [] still means any address on that port.
    render([PEERS], {f"networkPolicy.{what}": "null", "config.env": "stage", **sets})


def test_default_servers_are_pods_of_the_release_namespace() -> None:
    policies = find(render(), "NetworkPolicy")
    own_db = Peer({"app": "postgresql"})
    elsewhere = Peer({"app": "postgresql"}, {"kubernetes.io/metadata.name": "other"})
    assert allowed(policies, API, own_db, 5432)
    assert not allowed(policies, API, elsewhere, 5432)
    assert not allowed(policies, API, Peer(ip="10.1.2.3"), 5432)
    # No object store configured: no egress on its port at all.
    assert not allowed(policies, API, Peer(ip="52.1.2.3"), 443)
    assert not allowed(policies, WORKER, Peer(ip="52.1.2.3"), 443)


# -- pod extras ---------------------------------------------------------------------------


def test_pod_extras_are_rendered_for_every_workload() -> None:
    sets: dict[str, str] = {"colors.green.enabled": "true"}
    for c in ("api", "ui", "worker"):
        sets |= {
            f"{c}.priorityClassName": f"{c}-prio",
            f"{c}.topologySpreadConstraints[0].maxSkew": "1",
            f"{c}.topologySpreadConstraints[0].topologyKey": "topology.kubernetes.io/zone",
            f"{c}.topologySpreadConstraints[0].whenUnsatisfiable": "ScheduleAnyway",
            f"{c}.topologySpreadConstraints[1].maxSkew": "2",
            f"{c}.topologySpreadConstraints[1].topologyKey": "kubernetes.io/hostname",
            f"{c}.topologySpreadConstraints[1].whenUnsatisfiable": "DoNotSchedule",
            f"{c}.topologySpreadConstraints[1].labelSelector.matchLabels.tier": "mine",
            f"{c}.extraContainers[0].name": "sidecar",
            f"{c}.extraContainers[0].image": "proxy:1",
            f"{c}.extraVolumes[0].name": "certs",
            f"{c}.extraVolumes[0].secret.secretName": "ca",
            f"{c}.extraVolumeMounts[0].name": "certs",
            f"{c}.extraVolumeMounts[0].mountPath": "/etc/ca",
        }
    objs = render(PROD, sets)
    names = {
        "api": ["rel-ballast-api-blue", "rel-ballast-api-green"],
        "ui": ["rel-ballast-ui-blue", "rel-ballast-ui-green"],
        "worker": ["rel-ballast-worker"],
    }
    for c, deployments in names.items():
        for name in deployments:
            spec = one(objs, "Deployment", name)["spec"]["template"]["spec"]
            assert spec["priorityClassName"] == f"{c}-prio"
            own, given = spec["topologySpreadConstraints"]
            wanted = {
                "app.kubernetes.io/name": "ballast",
                "app.kubernetes.io/instance": "rel",
                "app.kubernetes.io/component": c,
            }
            if c != "worker":
                wanted["ballast.io/color"] = name.rsplit("-", 1)[1]
            assert own["labelSelector"] == {"matchLabels": wanted}, name
            assert own["topologyKey"] == "topology.kubernetes.io/zone"
            assert given["labelSelector"] == {"matchLabels": {"tier": "mine"}}
            main, sidecar = spec["containers"]
            assert sidecar == {"name": "sidecar", "image": "proxy:1"}
            assert {"name": "certs", "mountPath": "/etc/ca"} in main["volumeMounts"]
            assert {"name": "certs", "secret": {"secretName": "ca"}} in spec["volumes"]
    # Unset, none of them appear.
    for _, spec in [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in find(render(PROD), "Deployment")
    ]:
        assert "priorityClassName" not in spec
        assert "topologySpreadConstraints" not in spec


# -- job-mode migrations ------------------------------------------------------------------


def test_a_failed_job_mode_migration_runs_again_on_the_next_sync() -> None:
    # A Job that used up its backoffLimit stays Failed under its per-release name; as an
    # Argo CD Sync hook with BeforeHookCreation it is deleted and created again by the
    # next sync (still in wave -1, after its ServiceAccount and NetworkPolicy).
    (job,) = find(render(VALUE_SETS["argocd"]), "Job")
    ann = job["metadata"]["annotations"]
    assert ann["argocd.argoproj.io/hook"] == "Sync"
    assert ann["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert ann["argocd.argoproj.io/sync-wave"] == "-1"
    assert job["spec"]["backoffLimit"] == 2
    # Hook mode: Helm (and Argo CD, which maps it) deletes the old hook Job first too.
    (hook,) = find(render(PROD), "Job")
    assert (
        "before-hook-creation"
        in hook["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    )


# -- secrets per container, pod identity ----------------------------------------------------

# What each process reads from the Secret, and why (README "Which pod gets which secret").
SECRETS_BY_CONTAINER = {
    # session pepper, cache signing, webhook sealing | PostgreSQL | broker + cache L2 | S3
    "api": {"secret-key", "database-password", "redis-url", "s3-secret-access-key"},
    "worker": {"secret-key", "database-password", "redis-url", "s3-secret-access-key"},
    # cache signing and its Redis L2 only: no database, no object store
    "ui": {"secret-key", "redis-url"},
    # the schema only
    "migrate": {"secret-key", "database-password"},
    "wait-for-migrations": {"secret-key", "database-password"},
    # PostgreSQL and the object store, never Redis
    "backup": {"secret-key", "database-password", "s3-secret-access-key"},
    "exporter": {"secret-key", "database-password", "s3-secret-access-key"},
    "check": set(),
}


def _secret_refs(container: Obj) -> dict[str, Obj]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }


def test_each_container_gets_only_the_secrets_it_uses() -> None:
    objs = render(
        PROD,
        {
            "colors.green.enabled": "true",
            "backup.pitr.enabled": "true",
            "backup.pitr.tlsSecret": "t",
        },
    )
    seen = set()
    for ref, spec in pod_specs(objs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            keys = {r["key"] for r in _secret_refs(c).values()}
            assert keys == SECRETS_BY_CONTAINER[c["name"]], (ref, c["name"])
            seen.add(c["name"])
            refs = _secret_refs(c)
            if "BALLAST_S3__SECRET_ACCESS_KEY" in refs:
                # backups cannot work without it; the api and workers start without
                required = c["name"] in ("backup", "exporter")
                assert (
                    refs["BALLAST_S3__SECRET_ACCESS_KEY"].get("optional", False)
                    is not required
                )
    assert seen == set(SECRETS_BY_CONTAINER)


def test_pod_identity_needs_no_static_s3_key() -> None:
    role = "arn:aws:iam::123456789012:role/ballast-backup"
    key = "eks\\.amazonaws\\.com/role-arn"
    objs = render(
        PROD,
        {
            "s3.accessKeyId": "",
            f"backup.serviceAccount.annotations.{key}": role,
            f"api.serviceAccount.annotations.{key}": role,
            f"worker.serviceAccount.annotations.{key}": role,
        },
    )
    assert "BALLAST_S3__ACCESS_KEY_ID" not in _config(objs)
    assert _config(objs)["BALLAST_S3__ENDPOINT_URL"]
    for ref, spec in pod_specs(objs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert "BALLAST_S3__SECRET_ACCESS_KEY" not in _secret_refs(c), ref
    for name in ("rel-ballast-backup", "rel-ballast-api", "rel-ballast-worker"):
        sa = one(objs, "ServiceAccount", name)
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    backups = [s for r, s in pod_specs(objs) if r.startswith("CronJob/")]
    assert backups
    assert {s["serviceAccountName"] for s in backups} == {"rel-ballast-backup"}


def test_direct_uploads_get_the_browser_facing_store_and_the_ui_origins() -> None:
    """Presigned upload URLs are signed for s3.publicUrl, and the bucket's CORS rule
    lets the ui's own origins PUT to it: by default every Ingress host."""
    hosts = {
        "ingress.host": "app.example.com",
        "ingress.extraHosts[0]": "x.example.com",
    }
    default = _config(render(PROD, hosts))
    assert "BALLAST_S3__PUBLIC_URL" not in default
    assert json.loads(default["BALLAST_S3__CORS_ORIGINS"]) == [
        "https://app.example.com",
        "https://x.example.com",
    ]
    chosen = _config(
        render(
            PROD,
            {
                **hosts,
                "s3.publicUrl": "https://files.example.com",
                "s3.corsOrigins[0]": "https://other.example.com",
            },
        )
    )
    assert chosen["BALLAST_S3__PUBLIC_URL"] == "https://files.example.com"
    assert json.loads(chosen["BALLAST_S3__CORS_ORIGINS"]) == [
        "https://other.example.com"
    ]
    # No Ingress, no origin to guess: the bucket's CORS is left alone.
    assert "BALLAST_S3__CORS_ORIGINS" not in _config(
        render(PROD, {"ingress.enabled": "false"})
    )
    # No object store: nothing of it at all.
    assert "BALLAST_S3__CORS_ORIGINS" not in _config(render())
