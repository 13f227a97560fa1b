"""The ui's interaction alert (promtool test rules): the 95th percentile of reruns caused
by a user (widget, button, navigation, history) above 50 ms, while users interact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.charts.test_alerts_dashboards import _expect, _promtool, _rules

ALERT = "BallastUiInteractionSlow"


def _series(trigger: str, le: str) -> str:
    return (
        'ballast_ui_rerun_seconds_bucket{namespace="ballast", pod="ui-1", '
        f'page="projects", trigger="{trigger}", le="{le}"}}'
    )


def _histogram(trigger: str, fast: str, slow: str) -> list[dict[str, str]]:
    """Per minute: `fast` runs under 50 ms, `slow` more between 50 and 100 ms."""
    total = f"0+{float(fast) + float(slow)}x40"
    rows = [
        {"series": _series(trigger, "0.05"), "values": f"0+{fast}x40"},
        {"series": _series(trigger, "0.1"), "values": total},
        {"series": _series(trigger, "+Inf"), "values": total},
    ]
    count = _series(trigger, "").replace("_bucket", "_count").replace(', le=""', "")
    return [*rows, {"series": count, "values": total}]


def _at(eval_time: str, exp: list[dict[str, Any]]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": ALERT, "exp_alerts": exp}


def ui_unit_tests(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # one interaction a second, half of them slower than 50 ms: p95 ~ 95 ms
                "interval": "1m",
                "input_series": _histogram("widget", "30", "30"),
                "alert_rule_test": [_at("8m", []), _at("25m", [_expect(rules, ALERT)])],
            },
            {  # every interaction under 50 ms; slow status polls are no interaction
                "interval": "1m",
                "input_series": [
                    *_histogram("button", "60", "0"),
                    *_histogram("poll", "0", "60"),
                ],
                "alert_rule_test": [_at("25m", [])],
            },
            {  # slow, but one interaction in 2 minutes: too few to say anything
                "interval": "1m",
                "input_series": _histogram("nav", "0", "0.5"),
                "alert_rule_test": [_at("25m", [])],
            },
        ],
    }


def _run(tmp_path: Path, tests: dict[str, Any], rules: dict[str, Any]) -> Any:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests))
    return _promtool("test", "rules", str(tmp_path / "rules_test.yaml"))


def test_slow_interactions_alert(tmp_path: Path) -> None:
    rules = _rules()
    proc = _run(tmp_path, ui_unit_tests(rules), rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_ui_alert_test_can_fail(tmp_path: Path) -> None:
    """Fast interactions must not satisfy the expectation that the alert fires."""
    rules = _rules()
    tests = ui_unit_tests(rules)
    tests["tests"] = [tests["tests"][0]]
    tests["tests"][0]["input_series"] = _histogram("widget", "60", "0")
    proc = _run(tmp_path, tests, rules)
    assert proc.returncode != 0
    assert ALERT in proc.stdout + proc.stderr
