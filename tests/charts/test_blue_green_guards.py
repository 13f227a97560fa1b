"""Render-time guards of blue-green: values that would cause an outage fail the render."""

from __future__ import annotations

from tests.charts.conftest import VALUE_SETS, find, helm, render, template_args

WAVE = "argocd.argoproj.io/sync-wave"


def _template(sets: dict[str, str], *extra: str) -> tuple[int, str]:
    proc = helm(*template_args((), sets), *extra, check=False)
    return proc.returncode, proc.stderr


def test_an_active_colour_that_is_not_deployed_fails_the_render() -> None:
    code, err = _template({"activeColor": "green"})  # green is disabled by default
    assert code != 0
    assert "activeColor green" in err
    assert "colors.green.enabled" in err
    code, _ = _template({"activeColor": "green", "colors.green.enabled": "true"})
    assert code == 0


def test_an_upgrade_never_rolls_the_live_colour_through_image_tag() -> None:
    # An empty tag follows image.tag: on an upgrade that bumps image.tag, the live
    # colour would be replaced in place. The render refuses and says what to set.
    code, err = _template({"image.tag": "2.0.0"}, "--is-upgrade")
    assert code != 0
    assert "colors.blue.tag" in err
    code, _ = _template(
        {"image.tag": "2.0.0", "colors.blue.tag": "1.0.0"}, "--is-upgrade"
    )
    assert code == 0
    # The first install has no live colour: image.tag is what it runs.
    code, _ = _template({"image.tag": "2.0.0"})
    assert code == 0


def test_argocd_job_mode_creates_what_the_migration_job_needs_first() -> None:
    objs = render(VALUE_SETS["argocd"])
    (job,) = find(objs, "Job")
    job_wave = int(job["metadata"]["annotations"][WAVE])
    needs = [
        *find(objs, "ServiceAccount", "rel-ballast-migrations"),
        *find(objs, "NetworkPolicy", "rel-ballast-migrations"),
    ]
    assert len(needs) == 2
    for obj in needs:
        wave = int((obj["metadata"].get("annotations") or {}).get(WAVE, "0"))
        assert wave < job_wave, f"{obj['kind']} in wave {wave}, the Job in {job_wave}"
