"""NetworkPolicies: default deny, and exactly the architecture's flows are allowed.

A small evaluator applies the Kubernetes rules (a flow is allowed when an egress rule of some
policy selecting the source and an ingress rule of some policy selecting the destination both
admit it; a pod no policy selects for a direction is unrestricted in it) to the rendered policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.charts.conftest import VALUE_SETS, Obj, find, render

BASE = {"app.kubernetes.io/name": "ballast", "app.kubernetes.io/instance": "rel"}
NS = {"kubernetes.io/metadata.name": "ballast"}


@dataclass(frozen=True)
class Peer:
    """A pod (labels + namespace labels) or an address outside the cluster."""

    labels: dict[str, str] = field(default_factory=dict)
    ns: dict[str, str] = field(default_factory=lambda: dict(NS))
    ip: str | None = None

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.labels.items())), self.ip))


def pod(component: str, **extra: str) -> Peer:
    return Peer({**BASE, "app.kubernetes.io/component": component, **extra})


UI = pod("ui", **{"ballast.io/color": "blue"})
API = pod("api", **{"ballast.io/color": "green"})
MIGRATE = pod("migrations")
WORKER = pod("worker")
BACKUP = pod("backup", **{"ballast.io/backup-run": "full"})
EXPORTER = pod("backup-exporter")
TEST = pod("test")
INGRESS = Peer(
    {"app.kubernetes.io/name": "ingress-nginx"},
    {"kubernetes.io/metadata.name": "ingress-nginx"},
)
PROMETHEUS = Peer(
    {"app.kubernetes.io/name": "prometheus"},
    {"kubernetes.io/metadata.name": "monitoring"},
)
# In-cluster servers shaped like values-production.yaml's peers (the defaults allow any peer).
DATABASES = {"kubernetes.io/metadata.name": "databases"}
POSTGRES = Peer({"cnpg.io/cluster": "ballast-pg"}, DATABASES)
REDIS = Peer({"app.kubernetes.io/name": "redis"}, DATABASES)
S3 = Peer(ip="52.1.2.3")
DNS = Peer({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})
OTHER = Peer({"app": "other"})


def _matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer_ok(rule_peers: list[Obj] | None, peer: Peer) -> bool:
    if not rule_peers:  # no from/to: every peer
        return True
    for p in rule_peers:
        if "ipBlock" in p:
            if peer.ip is not None:
                return True  # the examples' CIDRs are not checked bit by bit
            continue
        if peer.ip is not None:
            continue
        ns_ok = (
            _matches(p["namespaceSelector"], peer.ns)
            if "namespaceSelector" in p
            else peer.ns == NS
        )
        if ns_ok and _matches(p.get("podSelector"), peer.labels):
            return True
    return False


def _port_ok(rule_ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    return any(
        p.get("port") == port and p.get("protocol", "TCP") == protocol
        for p in rule_ports
    )


def _direction_allows(
    policies: list[Obj],
    target: Peer,
    other: Peer,
    port: int,
    protocol: str,
    direction: str,
) -> bool:
    if target.ip is not None or target.ns != NS:
        return True  # outside the release: not ours to restrict
    selecting = [
        p
        for p in policies
        if direction.capitalize() in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], target.labels)
    ]
    if not selecting:
        return True
    key, peers_key = (direction, "to" if direction == "egress" else "from")
    return any(
        _peer_ok(rule.get(peers_key), other)
        and _port_ok(rule.get("ports"), port, protocol)
        for p in selecting
        for rule in p["spec"].get(key, [])
    )


def allowed(
    policies: list[Obj], src: Peer, dst: Peer, port: int, protocol: str = "TCP"
) -> bool:
    return _direction_allows(
        policies, src, dst, port, protocol, "egress"
    ) and _direction_allows(policies, dst, src, port, protocol, "ingress")


# The architecture diagram's flows (source, destination, port).
FLOWS = [
    (INGRESS, UI, 8501),
    (UI, API, 8000),
    (UI, REDIS, 6379),  # the cache's L2 and its busts across replicas
    (API, POSTGRES, 5432),
    (API, REDIS, 6379),
    (API, S3, 443),
    (MIGRATE, POSTGRES, 5432),
    (WORKER, POSTGRES, 5432),
    (WORKER, REDIS, 6379),
    (WORKER, S3, 443),
    (BACKUP, POSTGRES, 5432),
    (BACKUP, S3, 443),
    (EXPORTER, POSTGRES, 5432),
    (EXPORTER, S3, 443),
    (PROMETHEUS, UI, 9104),  # the metrics ports
    (PROMETHEUS, API, 9103),
    (PROMETHEUS, WORKER, 9101),
    (PROMETHEUS, EXPORTER, 9102),
    (TEST, UI, 8501),
    (TEST, API, 8000),
]
# Flows the architecture forbids.
DENIED = [
    (UI, POSTGRES, 5432),  # the ui never opens a database connection
    (INGRESS, API, 8000),  # the browser reaches the api only through the ui
    (OTHER, UI, 8501),
    (OTHER, API, 8000),
    (API, UI, 8501),
    (MIGRATE, API, 8000),
    (API, Peer(ip="8.8.8.8"), 22),
    (UI, Peer(ip="8.8.8.8"), 443),  # no egress to the internet from the ui
    (INGRESS, UI, 8000),
    (UI, WORKER, 9101),  # nothing but Prometheus talks to a worker
    (API, WORKER, 9101),
    (INGRESS, WORKER, 9101),
    (WORKER, API, 8000),
    (
        BACKUP,
        REDIS,
        6379,
    ),  # backups read PostgreSQL and write the object store, nothing else
    (BACKUP, API, 8000),
    (OTHER, EXPORTER, 9102),
    (PROMETHEUS, BACKUP, 9102),  # the CronJob pods serve nothing
    (WORKER, Peer(ip="8.8.8.8"), 22),
    # /metrics lives on the metrics ports, which only Prometheus reaches ...
    (INGRESS, UI, 9104),
    (OTHER, UI, 9104),
    (OTHER, API, 9103),
    (UI, API, 9103),
    (TEST, API, 9103),
    # ... and Prometheus reaches nothing else of the ui and api.
    (PROMETHEUS, UI, 8501),
    (PROMETHEUS, API, 8000),
]


# Where the servers of the flows above live, for the value sets that do not say (prod needs peers).
PEERS = Path(__file__).with_name("values") / "peers.yaml"


@pytest.fixture(params=["default", "production", "argocd"])
def policies(request: pytest.FixtureRequest) -> list[Obj]:
    values = VALUE_SETS[request.param]
    objs = find(
        render(
            values if values else [PEERS],
            {
                "colors.green.enabled": "true",
                "backup.enabled": "true",
                "s3.endpointUrl": "https://s3.example.com",
            },
        ),
        "NetworkPolicy",
    )
    assert objs
    return objs


@pytest.mark.parametrize(("src", "dst", "port"), FLOWS)
def test_architecture_flow_is_allowed(
    policies: list[Obj], src: Peer, dst: Peer, port: int
) -> None:
    assert allowed(policies, src, dst, port)


@pytest.mark.parametrize(("src", "dst", "port"), DENIED)
def test_other_flows_are_denied(
    policies: list[Obj], src: Peer, dst: Peer, port: int
) -> None:
    assert not allowed(policies, src, dst, port)


@pytest.mark.parametrize("src", [UI, API, MIGRATE, TEST, WORKER, BACKUP, EXPORTER])
def test_every_pod_resolves_names(policies: list[Obj], src: Peer) -> None:
    assert allowed(policies, src, DNS, 53, "UDP")
    assert allowed(policies, src, DNS, 53, "TCP")


def test_default_deny_selects_every_release_pod(policies: list[Obj]) -> None:
    (deny,) = [p for p in policies if p["metadata"]["name"].endswith("-default-deny")]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    for peer in (UI, API, MIGRATE, TEST, WORKER, BACKUP, EXPORTER):
        assert _matches(deny["spec"]["podSelector"], peer.labels)


def test_production_peers_narrow_the_database_flow() -> None:
    objs = find(render(VALUE_SETS["production"]), "NetworkPolicy")
    stranger = Peer({"app": "x"}, DATABASES)
    assert allowed(objs, API, POSTGRES, 5432)
    assert not allowed(objs, API, stranger, 5432)
