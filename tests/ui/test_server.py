"""The UI's ASGI entry: the packaged Streamlit script, /metrics on the metrics port only
(the main port, which the Ingress routes, answers 404)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import ballast_ui
from ballast_common.telemetry.metrics import exposition
from ballast_testing.api import stop_process
from ballast_testing.servers import free_port
from ballast_ui import server
from ballast_ui.metrics import note_trigger, take_trigger, timed_run


def test_entry_script_ships_inside_the_package() -> None:
    package = Path(ballast_ui.__file__).resolve().parent
    assert server.SCRIPT.is_file()
    assert server.SCRIPT.resolve().is_relative_to(package)
    # Nothing next to the script that Streamlit would pick up (legacy pages/, modules).
    assert sorted(p.name for p in server.SCRIPT.parent.glob("*.py")) == [
        "__init__.py",
        "streamlit_app.py",
    ]
    assert not (server.SCRIPT.parent / "pages").exists()


def test_the_main_port_answers_404_on_metrics() -> None:
    client = TestClient(Starlette(routes=server.ROUTES))
    resp = client.get("/metrics")
    assert resp.status_code == 404
    assert "metrics port" in resp.text


def test_the_ui_process_serves_metrics_on_its_metrics_port_only(
    tmp_path: Path,
) -> None:
    """A real `python -m ballast_ui`: Streamlit would answer any other path with its
    page (200), so the 404 of the main port is its own route's."""
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,  # noqa: TID251 - the child inherits our environment
        "BALLAST_API_URL": "http://127.0.0.1:9",
        "BALLAST_UI__HOST": "127.0.0.1",
        "BALLAST_UI__PORT": str(port),
        "BALLAST_UI__METRICS_PORT": str(metrics_port),
    }
    with (tmp_path / "ui.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ballast_ui"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the ui did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/_stcore/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        assert httpx.get(base + "/some/page", timeout=5).status_code == 200
        assert httpx.get(base + "/metrics", timeout=5).status_code == 404
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scrape.status_code == 200
        assert "# TYPE ballast_ui_rerun_seconds histogram" in scrape.text
        version = importlib.metadata.version("ballast-ui")
        assert (
            f'ballast_build_info{{schema="",service="ui",version="{version}"}} 1.0'
            in scrape.text
        )
    finally:
        stop_process(proc)


def test_metrics_exports_rerun_histogram_by_page_and_trigger() -> None:
    state: dict[str, str] = {}
    note_trigger(state, "button")
    with timed_run("unit-page", take_trigger(state, "widget")):
        pass
    with timed_run("unit-page", take_trigger(state, "widget")):
        pass
    lines = exposition()[0].decode().splitlines()
    count = {
        trigger: next(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith("ballast_ui_rerun_seconds_count{")
            and 'page="unit-page"' in line
            and f'trigger="{trigger}"' in line
        )
        for trigger in ("button", "widget")
    }
    assert count == {"button": 1.0, "widget": 1.0}


def test_rerun_buckets_resolve_a_widget_rerun_and_the_alert_threshold() -> None:
    from ballast_ui.metrics import RERUN_BUCKETS

    bounds = list(RERUN_BUCKETS)
    assert bounds == sorted(set(bounds))
    # A widget's rerun takes 5 to 15 ms: a p95 interpolated inside a bucket there is
    # off by at most 1.25 ms.
    fine = [b for b in bounds if 0.005 <= b <= 0.015]
    assert fine[0] == 0.005
    assert fine[-1] == 0.015
    assert max(b - a for a, b in itertools.pairwise(fine)) <= 0.0025 + 1e-9
    # The 50 ms interaction alert (chart: uiInteractionP95Seconds) is a bucket bound.
    assert 0.05 in bounds


def test_unknown_trigger_is_recorded_as_app() -> None:
    state: dict[str, str] = {}
    note_trigger(state, "something-else")
    assert take_trigger(state, "widget") == "app"
    assert take_trigger(state, "widget") == "widget"


def test_streamlit_options_are_real_streamlit_settings() -> None:
    from streamlit import config as st_config

    from ballast_ui.__main__ import STREAMLIT_OPTIONS, streamlit_argv

    known = st_config.get_config_options()
    unknown = [name for name in STREAMLIT_OPTIONS if name not in known]
    assert not unknown, f"not Streamlit settings: {unknown}"
    argv = streamlit_argv("127.0.0.1", 8765)
    assert argv[:2] == ["streamlit", "run"]
    assert argv[argv.index("--server.port") + 1] == "8765"
    assert argv[argv.index("--runner.postScriptGC") + 1] == "false"
    assert "server.maxUploadSize" in known


@pytest.mark.parametrize(("mb", "limit"), [(200.0, "200"), (1.5, "2"), (0.1, "1")])
def test_streamlit_upload_limit_follows_the_datasets_limit(
    mb: float, limit: str
) -> None:
    # Behind the chart, config.maxUploadMB sets BALLAST_DATASETS__MAX_UPLOAD_MB; the ui
    # must not refuse (Streamlit's default is 200 MB) what the api and the Ingress take.
    from ballast_ui.__main__ import streamlit_argv

    argv = streamlit_argv("127.0.0.1", 8765, mb)
    assert argv[argv.index("--server.maxUploadSize") + 1] == limit


@pytest.mark.parametrize(
    ("mb", "limit"), [(200.0, "275"), (150.0, "208"), (1.0, "200"), (0.1, "200")]
)
def test_websocket_message_limit_carries_the_largest_file_in_base64(
    mb: float, limit: str
) -> None:
    # The file field sends a file's content in base64 on the session's WebSocket: a
    # file of datasets.max_upload_mb must fit in one message (Streamlit's default 200 MB
    # does not carry a 200 MB file).
    from streamlit import config as st_config

    from ballast_ui.__main__ import streamlit_argv

    assert "server.maxMessageSize" in st_config.get_config_options()
    argv = streamlit_argv("127.0.0.1", 8765, mb)
    assert argv[argv.index("--server.maxMessageSize") + 1] == limit
    assert int(limit) * 1024 * 1024 >= mb * 1024 * 1024 * 4 / 3
