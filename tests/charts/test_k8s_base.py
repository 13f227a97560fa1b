"""k8s/base: the namespace-wide default deny still lets cert-manager's HTTP-01 solver answer.

The prod overlay's ClusterIssuer solves ACME HTTP-01 through ingress-nginx: the CA (and
cert-manager's self-check) reach the solver pod in the release namespace through the ingress
controller. The NetworkPolicy evaluator of test_networkpolicy is applied to the kustomize output.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.charts.conftest import ROOT, Obj, require_tool
from tests.charts.test_networkpolicy import (
    INGRESS,
    OTHER,
    PROMETHEUS,
    UI,
    Peer,
    allowed,
)

SOLVER = Peer({"acme.cert-manager.io/http01-solver": "true"})


@pytest.fixture(scope="module")
def overlay() -> list[Obj]:
    """The prod overlay (namespace ballast, like the evaluator's pods)."""
    kubectl = require_tool("kubectl", "install kubectl (Debian/Kubernetes apt repo)")
    proc = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / "prod")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_the_prod_issuer_solves_http01_through_ingress_nginx(
    overlay: list[Obj],
) -> None:
    (issuer,) = [o for o in overlay if o["kind"] == "ClusterIssuer"]
    (solver,) = issuer["spec"]["acme"]["solvers"]
    assert solver["http01"]["ingress"]["ingressClassName"] == "nginx"


def test_the_acme_solver_is_reachable_from_the_ingress_controller_only(
    overlay: list[Obj],
) -> None:
    policies = [o for o in overlay if o["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["namespace"] for p in policies} == {"ballast"}
    assert allowed(policies, INGRESS, SOLVER, 8089)
    assert not allowed(policies, INGRESS, SOLVER, 8501)
    assert not allowed(policies, OTHER, SOLVER, 8089)
    assert not allowed(policies, PROMETHEUS, SOLVER, 8089)
    # The solver sends nothing; the default deny still holds for every other pod.
    assert not allowed(policies, SOLVER, Peer(ip="8.8.8.8"), 443)
    assert not allowed(
        policies, INGRESS, UI, 8501
    )  # the chart's own policies allow that
