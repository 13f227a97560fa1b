"""An api pod with several uvicorn workers: the chart passes the count and gives the pod
the writable /tmp its workers share their metric values through (the root filesystem is
read-only), and the api makes that directory there."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ballast_common.telemetry import metrics
from tests.charts.conftest import find, render


def _api_pods(workers: int) -> list[dict[str, Any]]:
    objs = render(sets={"api.workers": str(workers)})
    return [
        d["spec"]["template"]["spec"]
        for d in find(objs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "api"
    ]


@pytest.mark.parametrize("workers", [1, 4])
def test_an_api_pod_with_workers_has_a_writable_tmp_for_their_metrics(
    workers: int,
) -> None:
    pods = _api_pods(workers)
    assert pods, "no api Deployment rendered"
    for pod in pods:
        (api,) = [c for c in pod["containers"] if c["name"] == "api"]
        env = {e["name"]: e.get("value") for e in api["env"]}
        assert env["BALLAST_API__WORKERS"] == str(workers)
        assert api["securityContext"]["readOnlyRootFilesystem"] is True
        # Where tempfile (and so prepare_multiprocess_dir) writes: $TMPDIR, else /tmp.
        tmp = env.get("TMPDIR") or "/tmp"
        given = env.get(metrics.MULTIPROC_ENV)
        writable = {
            m["mountPath"]
            for m in api["volumeMounts"]
            if any(v["name"] == m["name"] and "emptyDir" in v for v in pod["volumes"])
        }
        for path in filter(None, (tmp, given)):
            assert any(
                path == w or path.startswith(w.rstrip("/") + "/") for w in writable
            ), f"{path} is not on a writable volume of the api pod ({writable})"


def test_the_api_makes_its_metrics_directory_under_the_pods_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pod's api process does at start with workers > 1 and no operator
    directory: a fresh directory under the temporary directory (the pod's emptyDir)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "set-below")
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    made = metrics.prepare_multiprocess_dir(4)
    assert made is not None
    assert made.parent == tmp_path
    assert os.environ[metrics.MULTIPROC_ENV] == str(made)  # noqa: TID251
