"""The chart's security parts: ui security headers through the Ingress, the api's trusted
proxies and docs switch, and the login alerts (promtool test rules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.charts.conftest import VALUE_SETS, Obj, find, one, render
from tests.charts.test_alerts_dashboards import _expect, _promtool, _rules

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def _ingress(objs: list[Obj]) -> Obj:
    return one(objs, "Ingress", "rel-ballast")


def test_ui_ingress_adds_security_headers_by_default() -> None:
    for values in (VALUE_SETS["default"], VALUE_SETS["production"]):
        objs = render(values)
        ann = _ingress(objs)["metadata"]["annotations"]
        assert ann["nginx.ingress.kubernetes.io/custom-headers"] == (
            "ballast/rel-ballast-ui-headers"
        )
        assert "nginx.ingress.kubernetes.io/configuration-snippet" not in ann
        data = one(objs, "ConfigMap", "rel-ballast-ui-headers")["data"]
        assert HEADERS.items() <= data.items()


def test_ui_security_headers_as_a_configuration_snippet() -> None:
    objs = render(VALUE_SETS["production"], {"ingress.securityHeaders.mode": "snippet"})
    ann = _ingress(objs)["metadata"]["annotations"]
    snippet = ann["nginx.ingress.kubernetes.io/configuration-snippet"]
    for name, value in HEADERS.items():
        assert f"more_set_headers {json.dumps(f'{name}: {value}')};" in snippet
    assert "nginx.ingress.kubernetes.io/custom-headers" not in ann
    assert not find(objs, "ConfigMap", "rel-ballast-ui-headers")


def test_ui_security_headers_can_be_left_to_the_operator() -> None:
    objs = render(
        VALUE_SETS["production"], {"ingress.securityHeaders.enabled": "false"}
    )
    ann = _ingress(objs)["metadata"]["annotations"]
    assert not any("custom-headers" in k or "snippet" in k for k in ann)
    assert not find(objs, "ConfigMap", "rel-ballast-ui-headers")


def _config(objs: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = one(objs, "ConfigMap", "rel-ballast-config")["data"]
    return data


def test_trusted_proxies_and_docs_switch_reach_the_processes() -> None:
    default = _config(render(VALUE_SETS["production"]))
    assert "BALLAST_SECURITY__TRUSTED_PROXIES" not in default
    assert "BALLAST_SECURITY__API_DOCS" not in default  # prod: docs off
    objs = render(
        VALUE_SETS["production"],
        {"config.trustedProxies": "{10.42.0.0/16,fd00::/8}", "config.apiDocs": "true"},
    )
    config = _config(objs)
    assert json.loads(config["BALLAST_SECURITY__TRUSTED_PROXIES"]) == [
        "10.42.0.0/16",
        "fd00::/8",
    ]
    assert config["BALLAST_SECURITY__API_DOCS"] == "true"


# --- alerts --------------------------------------------------------------------------

NS = 'namespace="ballast", service="api"'
THROTTLED = f'ballast_login_attempts_total{{{NS}, pod="api-1", outcome="throttled"}}'
DEGRADED = f'ballast_login_limiter_degraded{{{NS}, pod="api-1"}}'


def _at(eval_time: str, alert: str, exp: list[dict[str, Any]]) -> Obj:
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": exp}


def _login_unit_tests(rules: Obj) -> Obj:
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # 60 refused logins a minute (1/s) for 30 minutes; Redis away for 5 minutes
                "interval": "1m",
                "input_series": [
                    {"series": THROTTLED, "values": "0+60x30"},
                    {"series": DEGRADED, "values": "0x5 1x5 0x20"},
                ],
                "alert_rule_test": [
                    _at("5m", "BallastLoginBruteForce", []),
                    _at(
                        "20m",
                        "BallastLoginBruteForce",
                        [_expect(rules, "BallastLoginBruteForce")],
                    ),
                    _at("12m", "BallastLoginLimiterDegraded", []),
                ],
            },
            {  # a few refusals (a user who forgot a password) and Redis away for good
                "interval": "1m",
                "input_series": [
                    {"series": THROTTLED, "values": "0+2x30"},
                    {"series": DEGRADED, "values": "1x30"},
                ],
                "alert_rule_test": [
                    _at("25m", "BallastLoginBruteForce", []),
                    _at(
                        "25m",
                        "BallastLoginLimiterDegraded",
                        [_expect(rules, "BallastLoginLimiterDegraded")],
                    ),
                ],
            },
        ],
    }


def _run(tmp_path: Path, rules: Obj, tests: Obj) -> Any:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests))
    return _promtool("test", "rules", str(tmp_path / "rules_test.yaml"))


def test_login_alerts_fire_on_promtool_test_rules(tmp_path: Path) -> None:
    rules = _rules()
    proc = _run(tmp_path, rules, _login_unit_tests(rules))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_login_promtool_test_can_fail(tmp_path: Path) -> None:
    rules = _rules()
    tests = _login_unit_tests(rules)
    tests["tests"][1]["alert_rule_test"][0]["exp_alerts"] = [
        _expect(rules, "BallastLoginBruteForce")
    ]
    proc = _run(tmp_path, rules, tests)
    assert proc.returncode != 0
    assert "BallastLoginBruteForce" in proc.stdout + proc.stderr
