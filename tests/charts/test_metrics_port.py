"""The ui's and api's /metrics live on a port of their own: a `metrics` container port,
scraped through the per-colour Services by the ServiceMonitor (or the scrape
annotations), reachable from Prometheus's namespace only, never routed by the Ingress.
"""

from __future__ import annotations

import pytest

from tests.charts.conftest import VALUE_SETS, Obj, find, helm, render, template_args

MAIN = {"ui": ("ui", 8501, 9104), "api": ("api", 8000, 9103)}


def _container(deploy: Obj, name: str) -> Obj:
    spec = deploy["spec"]["template"]["spec"]
    (found,) = [c for c in spec["containers"] if c["name"] == name]
    return found


@pytest.mark.parametrize("component", ["ui", "api"])
def test_a_metrics_container_port_and_its_setting(
    rendered: list[Obj], component: str
) -> None:
    name, port, metrics = MAIN[component]
    deploys = [
        d
        for d in find(rendered, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(deploys) == 2  # blue and green
    for deploy in deploys:
        c = _container(deploy, name)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": port, "metrics": metrics}
        env = {e["name"]: e.get("value") for e in c["env"]}
        prefix = f"BALLAST_{component.upper()}__"
        assert env[prefix + "PORT"] == str(port)
        assert env[prefix + "METRICS_PORT"] == str(metrics)


def test_only_the_per_colour_services_carry_the_metrics_port(
    rendered: list[Obj],
) -> None:
    for svc in find(rendered, "Service"):
        labels = svc["metadata"]["labels"]
        component = labels["app.kubernetes.io/component"]
        names = [p["name"] for p in svc["spec"]["ports"]]
        if component not in MAIN:
            continue
        if labels["ballast.io/service-role"] == "color":
            assert names == ["http", "metrics"], svc["metadata"]["name"]
            metrics = svc["spec"]["ports"][1]
            assert metrics["targetPort"] == "metrics"
            assert metrics["port"] == MAIN[component][2]
        else:  # what the Ingress and clients use: no way to reach /metrics
            assert names == ["http"], svc["metadata"]["name"]


def test_the_ingress_routes_the_ui_main_port_only() -> None:
    rendered = render(
        VALUE_SETS["production"],
        {
            "colors.green.enabled": "true",
            "ingress.enabled": "true",
            "ingress.previewHost": "preview.example.com",
        },
    )
    services = {s["metadata"]["name"]: s for s in find(rendered, "Service")}
    backends = [
        path["backend"]["service"]
        for ing in find(rendered, "Ingress")
        for rule in ing["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert len(backends) == 2  # the active and the preview ui
    for backend in backends:
        assert backend["port"] == {"name": "http"}
        (port,) = [
            p for p in services[backend["name"]]["spec"]["ports"] if p["name"] == "http"
        ]
        assert port["targetPort"] == "http"  # the container's main port


def test_the_servicemonitor_scrapes_metrics_ports_only() -> None:
    objs = render(VALUE_SETS["production"], {"metrics.serviceMonitor.enabled": "true"})
    (monitor,) = find(objs, "ServiceMonitor")
    endpoints = monitor["spec"]["endpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [("metrics", "/metrics")]
    selected = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
    # Every Service it selects that has a port named metrics; ui/api ones per colour.
    scraped = [
        s
        for s in find(objs, "Service")
        if s["metadata"]["labels"].get("ballast.io/service-role") in selected
    ]
    components = {
        s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped
    }
    assert {"ui", "api", "worker"} <= components
    for svc in scraped:
        assert "metrics" in [p["name"] for p in svc["spec"]["ports"]]


def test_scrape_annotations_name_the_metrics_port() -> None:
    def annotations(objs: list[Obj]) -> dict[str, dict[str, str]]:
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]
            for d in find(objs, "Deployment")
        }

    off = annotations(render())
    assert not any("prometheus.io/scrape" in a for a in off.values())
    on = annotations(render(sets={"metrics.scrapeAnnotations": "true"}))
    wanted = {"rel-ballast-ui-blue": "9104", "rel-ballast-api-blue": "9103"}
    wanted["rel-ballast-worker"] = "9101"
    for name, port in wanted.items():
        assert on[name]["prometheus.io/scrape"] == "true"
        assert on[name]["prometheus.io/port"] == port
        assert on[name]["prometheus.io/path"] == "/metrics"


def test_a_metrics_port_equal_to_the_main_port_is_refused() -> None:
    proc = helm(*template_args(sets={"ui.metricsPort": "8501"}), check=False)
    assert proc.returncode != 0
    assert "ui.metricsPort must differ from ui.port (8501)" in proc.stderr
