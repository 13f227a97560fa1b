"""The cache's alert (promtool test rules) and its dashboard panels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.charts.conftest import CHART
from tests.charts.test_alerts_dashboards import _expect, _promtool, _rules

NS = 'namespace="ballast", pod="ui-1"'
L1_HIT = f'ballast_cache_requests_total{{{NS}, layer="l1", result="hit"}}'
L1_MISS = f'ballast_cache_requests_total{{{NS}, layer="l1", result="miss"}}'
L2_HIT = f'ballast_cache_requests_total{{{NS}, layer="l2", result="hit"}}'
ALERT = "BallastCacheHitRatioCollapsed"


def _at(eval_time: str, exp: list[dict[str, Any]]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": ALERT, "exp_alerts": exp}


def _tests(rules: dict[str, Any]) -> dict[str, Any]:
    collapsed = _expect(rules, ALERT)
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # 90 % hits for 10 minutes, then 5 % (every write busting, Redis away)
                "interval": "1m",
                "input_series": [
                    {"series": L1_HIT, "values": "0+80x10 800+2x40"},
                    {"series": L1_MISS, "values": "0+20x10 200+98x40"},
                    {"series": L2_HIT, "values": "0+10x10 100+3x40"},
                ],
                "alert_rule_test": [
                    _at("10m", []),
                    _at("20m", []),
                    _at("45m", [collapsed]),
                ],
            },
            {  # a high ratio, and an idle cache, stay quiet
                "interval": "1m",
                "input_series": [
                    {"series": L1_HIT, "values": "0+90x60"},
                    {"series": L1_MISS, "values": "0+10x60"},
                    {
                        "series": 'ballast_cache_requests_total{namespace="ballast", pod="api-1", layer="l1", result="miss"}',
                        "values": "0x60",
                    },
                ],
                "alert_rule_test": [_at("50m", [])],
            },
            {  # 1 lookup in 10 minutes, all misses: too few to say anything
                "interval": "1m",
                "input_series": [{"series": L1_MISS, "values": "0+0.01x60"}],
                "alert_rule_test": [_at("50m", [])],
            },
        ],
    }


def _run(tmp_path: Path, tests: dict[str, Any], rules: dict[str, Any]) -> Any:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests))
    return _promtool("test", "rules", str(tmp_path / "rules_test.yaml"))


def test_a_collapsed_hit_ratio_alerts(tmp_path: Path) -> None:
    rules = _rules()
    proc = _run(tmp_path, _tests(rules), rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_cache_alert_test_can_fail(tmp_path: Path) -> None:
    rules = _rules()
    tests = _tests(rules)
    tests["tests"][1]["alert_rule_test"] = [_at("50m", [_expect(rules, ALERT)])]
    assert _run(tmp_path, tests, rules).returncode != 0


def test_the_dashboard_shows_the_caches_hit_ratio_latency_and_evictions() -> None:
    dashboard = json.loads(
        (CHART / "files" / "dashboards" / "ballast-overview.json").read_text()
    )
    exprs = " ".join(
        t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])
    )
    for name in (
        "ballast_cache_requests_total",
        "ballast_cache_get_seconds_bucket",
        "ballast_cache_evictions_total",
        "ballast_cache_errors_total",
    ):
        assert name in exprs
