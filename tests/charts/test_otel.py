"""Tracing values: otel.* become the standard OTEL_* variables of the ui, api and workers,
and a NetworkPolicy lets them reach the collector; nothing when otel.endpoint is empty.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.charts.conftest import VALUE_SETS, Obj, find, one, render

PROD = VALUE_SETS["production"]
ENDPOINT = "http://otel-collector.observability:4318"


@pytest.fixture
def traced(tmp_path: Path) -> list[Path]:
    """The production values with tracing on (a file: --set makes 0.25 a string)."""
    path = tmp_path / "otel.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "otel": {
                    "endpoint": ENDPOINT,
                    "samplerArg": 0.25,
                    "resourceAttributes": {"k8s.cluster.name": "eu-1"},
                }
            }
        )
    )
    return [*PROD, path]


def _env(objs: list[Obj], name: str) -> dict[str, str]:
    (container,) = [
        c
        for c in one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        if c["name"] != "cloud-sql-proxy"
    ][:1]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _otel_names(objs: list[Obj]) -> set[str]:
    names = set()
    for o in objs:
        spec = o.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get(
            "spec", {}
        ).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            names |= {
                e["name"] for e in c.get("env", []) if e["name"].startswith("OTEL_")
            }
    return names


def test_off_by_default() -> None:
    for values in VALUE_SETS.values():
        objs = render(values)
        assert _otel_names(objs) == set()
        assert not find(objs, "NetworkPolicy", "rel-ballast-otel")


def test_an_endpoint_traces_ui_api_and_workers(traced: list[Path]) -> None:
    objs = render(traced)
    api = _env(objs, "rel-ballast-api-blue")
    assert api["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT
    assert api["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert api["OTEL_SERVICE_NAME"] == "ballast-api"
    assert api["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert api["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    attrs = dict(kv.split("=", 1) for kv in api["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attrs["ballast.color"] == "blue"
    assert attrs["k8s.cluster.name"] == "eu-1"
    assert attrs["deployment.environment.name"] == "prod"
    assert attrs["service.version"]
    assert _env(objs, "rel-ballast-ui-blue")["OTEL_SERVICE_NAME"] == "ballast-ui"
    worker = _env(objs, "rel-ballast-worker")
    assert worker["OTEL_SERVICE_NAME"] == "ballast-worker"
    assert "ballast.color" not in worker["OTEL_RESOURCE_ATTRIBUTES"]


def test_a_sampler_without_ratio_gets_no_argument(traced: list[Path]) -> None:
    objs = render(traced, {"otel.sampler": "parentbased_always_on"})
    api = _env(objs, "rel-ballast-api-blue")
    assert api["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
    assert "OTEL_TRACES_SAMPLER_ARG" not in api


def test_the_collector_is_reachable_through_the_network_policies(
    traced: list[Path],
) -> None:
    objs = render(traced, {"otel.port": "4317"})
    policy = one(objs, "NetworkPolicy", "rel-ballast-otel")
    selector = policy["spec"]["podSelector"]
    assert selector["matchExpressions"] == [
        {
            "key": "app.kubernetes.io/component",
            "operator": "In",
            "values": ["ui", "api", "worker"],
        }
    ]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 4317}]}]
