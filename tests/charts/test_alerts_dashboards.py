"""Alert rules (promtool check/test rules) and dashboards (JSON naming real metrics)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import (
    CHART,
    ROOT,
    VALUE_SETS,
    Obj,
    find,
    render,
    require_tool,
)

PROMTOOL_HINT = "make install (Debian package prometheus provides promtool)"
SERIES = 'namespace="ballast", service="api", method="GET", route="/v1/projects"'


def _rules() -> Obj:
    (rule,) = find(render(VALUE_SETS["production"]), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def _alert(rules: Obj, name: str) -> Obj:
    return next(
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name
    )


def _expect(rules: Obj, name: str, **labels: str) -> dict[str, Any]:
    rule = _alert(rules, name)
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": rule["annotations"],
    }


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool", PROMTOOL_HINT)
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(_rules()))
    proc = _promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 14 rules found" in proc.stdout


def test_promtool_check_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "groups: [{name: g, rules: [{alert: A, expr: 'sum(rate(x[5m]'}]}]\n"
    )
    assert _promtool("check", "rules", str(path)).returncode != 0


def _unit_tests(rules: Obj) -> Obj:
    ok = f'ballast_http_requests_total{{{SERIES}, status="200"}}'
    err = f'ballast_http_requests_total{{{SERIES}, status="500"}}'
    bucket = f"ballast_http_request_duration_seconds_bucket{{{SERIES}"
    pool = 'ballast_db_pool_connections{namespace="ballast", service="api", pod="api-1"'
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # 1 request in 11 fails: above 5 %, for 5 minutes
                "interval": "1m",
                "input_series": [
                    {"series": ok, "values": "0+100x30"},
                    {"series": err, "values": "0+10x30"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "3m",
                        "alertname": "BallastApiHighErrorRate",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "BallastApiHighErrorRate",
                        "exp_alerts": [_expect(rules, "BallastApiHighErrorRate")],
                    },
                ],
            },
            {  # 1 request in 101 fails: below the threshold
                "interval": "1m",
                "input_series": [
                    {"series": ok, "values": "0+1000x30"},
                    {"series": err, "values": "0+10x30"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "BallastApiHighErrorRate",
                        "exp_alerts": [],
                    }
                ],
            },
            {  # 90 % of requests take 0.1-1 s: p95 about 0.95 s
                "interval": "1m",
                "input_series": [
                    {"series": f'{bucket}, le="0.1"}}', "values": "0+10x30"},
                    {"series": f'{bucket}, le="1"}}', "values": "0+100x30"},
                    {"series": f'{bucket}, le="+Inf"}}', "values": "0+100x30"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "BallastApiSlow",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "BallastApiSlow",
                        "exp_alerts": [_expect(rules, "BallastApiSlow")],
                    },
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'{pool}, state="checked_out"}}', "values": "10x20"},
                    {"series": f'{pool}, state="size"}}', "values": "10x20"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "BallastDbPoolExhausted",
                        "exp_alerts": [
                            _expect(rules, "BallastDbPoolExhausted", pod="api-1")
                        ],
                    }
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'up{namespace="ballast", service="rel-ballast-ui-green", job="x", instance="i"}',
                        "values": "1 1 0x20",
                    },
                    {
                        "series": 'up{namespace="ballast", service="rel-ballast-api-blue", job="x", instance="j"}',
                        "values": "1x20",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "BallastTargetDown",
                        "exp_alerts": [
                            _expect(
                                rules,
                                "BallastTargetDown",
                                namespace="ballast",
                                service="rel-ballast-ui-green",
                                job="x",
                                instance="i",
                            )
                        ],
                    }
                ],
            },
        ],
    }


NS = 'namespace="ballast"'
FULL = (
    f'ballast_backup_last_success_timestamp_seconds{{{NS}, kind="full", pod="exp-1"}}'
)
INCR = f'ballast_backup_last_success_timestamp_seconds{{{NS}, kind="incremental", pod="exp-1"}}'
DRILL_TS = f'ballast_backup_drill_last_timestamp_seconds{{{NS}, pod="exp-1"}}'
DRILL_OK = f'ballast_backup_drill_last_success{{{NS}, pod="exp-1"}}'
RPO = f'ballast_backup_rpo_seconds{{{NS}, pod="exp-1"}}'


def _at(eval_time: str, alert: str, exp: list[dict[str, Any]]) -> Obj:
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": exp}


def _backup_unit_tests(rules: Obj) -> Obj:
    """The backup and jobs alerts on the exporter's and the workers' series."""
    absent_full = _expect(
        rules, "BallastBackupFullMissing", namespace="ballast", kind="full"
    )
    # Day-long series are sampled every 4 minutes (inside Prometheus' 5-minute lookback, so
    # no series looks absent between samples) and the rules evaluated as often, to keep promtool fast.
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "4m",
        "tests": [
            {  # one full and one incremental backup at t=0, one passed drill, then silence
                "interval": "4m",
                "input_series": [
                    {"series": FULL, "values": "0x420"},
                    {"series": INCR, "values": "0x420"},
                    {"series": DRILL_TS, "values": "0x420"},
                    {"series": DRILL_OK, "values": "1x420"},
                    {"series": RPO, "values": "600x15 9000x400"},
                ],
                "alert_rule_test": [
                    _at("1h50m", "BallastBackupIncrementalMissing", []),
                    _at(
                        "2h20m",
                        "BallastBackupIncrementalMissing",
                        [_expect(rules, "BallastBackupIncrementalMissing")],
                    ),
                    _at("1h", "BallastBackupRpoExceeded", []),
                    _at(
                        "2h",
                        "BallastBackupRpoExceeded",
                        [_expect(rules, "BallastBackupRpoExceeded")],
                    ),
                    _at("25h", "BallastBackupFullMissing", []),
                    _at(
                        "27h",
                        "BallastBackupFullMissing",
                        [_expect(rules, "BallastBackupFullMissing")],
                    ),
                    _at("25h", "BallastBackupDrillMissing", []),
                    _at(
                        "27h",
                        "BallastBackupDrillMissing",
                        [_expect(rules, "BallastBackupDrillMissing")],
                    ),
                    _at("27h", "BallastBackupDrillFailed", []),
                ],
            },
            {  # fresh backups every hour keep every alert quiet
                "interval": "4m",
                "input_series": [
                    {"series": FULL, "values": "0x359 86400x75"},
                    {
                        "series": INCR,
                        "values": " ".join(f"{h * 3600}x14" for h in range(29)),
                    },
                    {"series": DRILL_TS, "values": "0x359 86400x75"},
                    {"series": DRILL_OK, "values": "1x435"},
                    {"series": RPO, "values": "3000x435"},
                ],
                "alert_rule_test": [
                    _at("27h", name, [])
                    for name in (
                        "BallastBackupFullMissing",
                        "BallastBackupIncrementalMissing",
                        "BallastBackupRpoExceeded",
                        "BallastBackupDrillFailed",
                        "BallastBackupDrillMissing",
                    )
                ],
            },
            {  # the drill fails; no exporter series for full backups at all
                "interval": "1m",
                "input_series": [
                    {"series": DRILL_TS, "values": "0x60"},
                    {"series": DRILL_OK, "values": "1x10 0x50"},
                    {
                        "series": 'ballast_jobs_queue_depth{namespace="ballast", queue="analysis", pod="w-1"}',
                        "values": "150x40",
                    },
                    {
                        "series": 'ballast_jobs_queue_depth{namespace="ballast", queue="default", pod="w-1"}',
                        "values": "3x40",
                    },
                ],
                "alert_rule_test": [
                    _at("8m", "BallastBackupDrillFailed", []),
                    _at(
                        "25m",
                        "BallastBackupDrillFailed",
                        [_expect(rules, "BallastBackupDrillFailed")],
                    ),
                    _at("5m", "BallastBackupFullMissing", []),
                    _at("15m", "BallastBackupFullMissing", [absent_full]),
                    _at("10m", "BallastJobsQueueBacklog", []),
                    _at(
                        "20m",
                        "BallastJobsQueueBacklog",
                        [_expect(rules, "BallastJobsQueueBacklog", queue="analysis")],
                    ),
                ],
            },
        ],
    }


def test_backup_and_jobs_alerts_fire_on_promtool_test_rules(tmp_path: Path) -> None:
    rules = _rules()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(_backup_unit_tests(rules)))
    proc = _promtool("test", "rules", str(tmp_path / "rules_test.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_backup_promtool_test_can_fail(tmp_path: Path) -> None:
    """A drill that passes must not satisfy the failed-drill expectation."""
    rules = _rules()
    tests = _backup_unit_tests(rules)
    tests["tests"] = [tests["tests"][2]]  # the short group is enough here
    tests["tests"][0]["input_series"][1]["values"] = "1x60"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests))
    proc = _promtool("test", "rules", str(tmp_path / "rules_test.yaml"))
    assert proc.returncode != 0
    assert "BallastBackupDrillFailed" in proc.stdout + proc.stderr


def test_alerts_fire_on_promtool_test_rules(tmp_path: Path) -> None:
    rules = _rules()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(_unit_tests(rules)))
    proc = _promtool("test", "rules", str(tmp_path / "rules_test.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_test_can_fail(tmp_path: Path) -> None:
    rules = _rules()
    tests = _unit_tests(rules)
    tests["tests"][1]["alert_rule_test"][0]["exp_alerts"] = [
        _expect(rules, "BallastApiHighErrorRate")
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests))
    assert _promtool("test", "rules", str(tmp_path / "rules_test.yaml")).returncode != 0


# --- dashboards -----------------------------------------------------------------------

METRIC_RE = re.compile(r"\bballast_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_metrics() -> set[str]:
    """Metric names the services' code registers (string literals in the sources)."""
    names: set[str] = set()
    for src in [*(ROOT / "libs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        names |= set(
            re.findall(r'"(ballast_[a-z0-9_]+)"', src.read_text(encoding="utf-8"))
        )
    return names


def _queries(dashboard: Obj) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [
        v["query"]["query"]
        for v in dashboard["templating"]["list"]
        if isinstance(v.get("query"), dict)
    ]
    return exprs


def _unknown(expr: str, known: set[str]) -> set[str]:
    unknown = set()
    for name in METRIC_RE.findall(expr):
        base = next(
            (name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name
        )
        if name not in known and base not in known:
            unknown.add(name)
    return unknown


DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_queries_name_exported_metrics(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"]
    assert dashboard["title"]
    known = exported_metrics()
    assert (
        "ballast_http_requests_total" in known
    )  # the scan finds the real registrations
    queries = _queries(dashboard)
    assert len(queries) >= 5
    for expr in queries:
        assert METRIC_RE.search(expr), expr
        assert _unknown(expr, known) == set(), expr
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_check_can_fail() -> None:
    assert _unknown("rate(ballast_made_up_total[5m])", exported_metrics()) == {
        "ballast_made_up_total"
    }


def test_alert_rules_name_exported_metrics() -> None:
    known = exported_metrics() | {"up"}
    for group in _rules()["groups"]:
        for rule in group["rules"]:
            assert _unknown(rule["expr"], known) == set(), rule["alert"]


def test_dashboard_configmap_carries_every_dashboard() -> None:
    objs = render(VALUE_SETS["production"])
    (cm,) = [
        c
        for c in find(objs, "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboards")
    ]
    assert sorted(cm["data"]) == [p.name for p in DASHBOARDS]
    for name, text in cm["data"].items():
        assert json.loads(text) == json.loads(
            (CHART / "files" / "dashboards" / name).read_text()
        )
