"""Every alert says what to do: a `description` with its first step always, and, once
`metrics.prometheusRule.runbookBaseUrl` says where docs/runbooks.md is published, a
`runbook_url` pointing at a section of it that exists and has a remediation; and every
alert has a promtool test in which it fires."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.charts.conftest import ROOT, VALUE_SETS, Obj, find, render
from tests.charts.test_alerts_dashboards import _backup_unit_tests, _rules, _unit_tests
from tests.charts.test_cache_alert import _tests as cache_unit_tests
from tests.charts.test_security_chart import _login_unit_tests
from tests.charts.test_ui_alerts import ui_unit_tests

RUNBOOKS = ROOT / "docs" / "runbooks.md"
BASE = "https://git.example.test/ballast/blob/main/docs/runbooks.md"


def _rules_with_runbooks(base: str = BASE) -> Obj:
    objs = render(
        VALUE_SETS["production"], {"metrics.prometheusRule.runbookBaseUrl": base}
    )
    (rule,) = find(objs, "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def _alerts(rules: Obj) -> list[Obj]:
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _sections(text: str) -> dict[str, str]:
    """Anchor -> body of every `## ` section."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {_anchor(h): body for h, body in zip(parts[1::2], parts[2::2], strict=True)}


def runbook_problems(rules: Obj, text: str, base: str = BASE) -> list[str]:
    sections = _sections(text)
    problems = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            url = rule.get("annotations", {}).get("runbook_url", "")
            if not url.startswith(base + "#"):
                problems.append(f"{name}: no runbook_url under {base}")
                continue
            body = sections.get(url.removeprefix(base + "#"))
            if body is None:
                problems.append(f"{name}: no section for {url}")
            elif "Remediation" not in body:
                problems.append(f"{name}: its section has no remediation")
    return problems


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    rules = _rules_with_runbooks()
    assert len(_alerts(rules)) >= 14
    assert runbook_problems(rules, RUNBOOKS.read_text(encoding="utf-8")) == []


def test_by_default_no_placeholder_link_and_every_alert_says_its_first_step() -> None:
    # The chart cannot know where its users publish the runbooks: no made-up address.
    alerts = _alerts(_rules())
    assert alerts
    for alert in alerts:
        annotations = alert["annotations"]
        assert "runbook_url" not in annotations, alert["alert"]
        assert annotations["description"].startswith("First step: "), alert["alert"]
    descriptions = [a["annotations"]["description"] for a in alerts]
    assert len(set(descriptions)) == len(descriptions)


def test_the_runbook_check_can_fail() -> None:
    rules = _rules_with_runbooks()
    text = RUNBOOKS.read_text(encoding="utf-8")
    without = text.replace("## BallastApiSlow\n", "## Something else\n")
    assert runbook_problems(rules, without) == [
        f"BallastApiSlow: no section for {BASE}#ballastapislow"
    ]
    del rules["groups"][0]["rules"][0]["annotations"]["runbook_url"]
    assert runbook_problems(rules, text) == [
        f"BallastApiHighErrorRate: no runbook_url under {BASE}"
    ]


def _firing(tests: Obj) -> set[str]:
    return {
        check["alertname"]
        for case in tests["tests"]
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }


def test_every_alert_fires_in_a_promtool_test() -> None:
    rules = _rules()
    builders: list[Callable[[Obj], Any]] = [
        _unit_tests,
        _backup_unit_tests,
        cache_unit_tests,
        _login_unit_tests,
        ui_unit_tests,
    ]
    tested = set().union(*(_firing(build(rules)) for build in builders))
    names = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert names - tested == set()
