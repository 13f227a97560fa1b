"""The overview dashboard: the ui's rerun histogram and interaction latency, the Workbench's
journey and track() panels, and deployment annotations (release, migration, colour
switch, restart) so incidents line up with changes. Every query is valid PromQL
(promtool parses it) and names metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.charts.conftest import CHART, Obj
from tests.charts.test_alerts_dashboards import _promtool, _unknown, exported_metrics

DASHBOARD = CHART / "files" / "dashboards" / "ballast-overview.json"


def _dashboard() -> Obj:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _exprs(dashboard: Obj) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs + [a["expr"] for a in dashboard["annotations"]["list"]]


def _promql(expr: str) -> str:
    """Grafana's variables replaced by what they stand for."""
    expr = expr.replace("$namespace", "ballast")
    return re.sub(r"\$__(rate_interval|range|interval)", "5m", expr)


def test_deployment_annotations() -> None:
    annotations = {a["name"]: a for a in _dashboard()["annotations"]["list"]}
    assert set(annotations) == {"Release", "Migration", "Colour switch", "Restart"}
    assert "ballast_build_info" in annotations["Release"]["expr"]
    assert "version" in annotations["Release"]["expr"]
    assert "schema" in annotations["Migration"]["expr"]
    assert "color" in annotations["Colour switch"]["expr"]
    assert "resets(" in annotations["Restart"]["expr"]
    for a in annotations.values():
        assert a["enable"] is True
        assert a["datasource"]["uid"] == "${datasource}"


def test_ui_and_business_panels() -> None:
    panels = {p["title"]: p for p in _dashboard()["panels"]}
    by_metric = {
        name: [
            t for t, p in panels.items() if any(name in x["expr"] for x in p["targets"])
        ]
        for name in ("ballast_ui_rerun_seconds", "ballast_events_total")
    }
    assert len(by_metric["ballast_ui_rerun_seconds"]) >= 3
    assert by_metric["ballast_events_total"]
    latency = next(t for t in panels if t.startswith("UI interaction latency"))
    steps = panels[latency]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == 0.05  # the 50 ms promise as a line


def test_every_query_parses_and_names_exported_metrics(tmp_path: Path) -> None:
    exprs = _exprs(_dashboard())
    known = exported_metrics()
    for expr in exprs:
        assert _unknown(expr, known) == set(), expr
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": _promql(e)}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = _promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
