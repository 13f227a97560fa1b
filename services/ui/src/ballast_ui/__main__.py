"""Run the UI: ``python -m ballast_ui`` (Streamlit on BALLAST_UI__HOST:BALLAST_UI__PORT)."""

from __future__ import annotations

import math
import sys
from importlib.metadata import version
from pathlib import Path

from streamlit.web import cli as stcli

from ballast_common.config import load_config
from ballast_common.telemetry.metrics import serve_metrics, set_build_info
from ballast_ui.metrics import RERUN_SECONDS

# Streamlit's settings for the Workbench, passed on the command line so they hold
# whatever the working directory (no .streamlit/config.toml to find or forget).
# Ref: https://docs.streamlit.io/develop/api-reference/configuration/config.toml
STREAMLIT_OPTIONS: dict[str, str] = {
    "server.headless": "true",
    # The UI runs behind an ingress in production; no file watching there.
    "server.runOnSave": "false",
    "server.fileWatcherType": "none",
    "browser.gatherUsageStats": "false",
    # The Workbench draws its own navigation (see ballast_ui.app).
    "client.showSidebarNavigation": "false",
    "client.toolbarMode": "minimal",
    # Widget values flow through our own callbacks; fast reruns keep interactions short.
    "runner.fastReruns": "true",
    # No full garbage collection after every run: the 1 s status poll would otherwise
    # hold the script thread for a gen-2 collection each second (measured: interactions
    # queued behind it). Python's own collector still runs.
    "runner.postScriptGC": "false",
}

# Registered when the server starts, not when the first session runs the script: a
# scrape of an idle pod already shows the histogram (empty), so no alert sees it absent.
REGISTERED_AT_START = (RERUN_SECONDS,)


# Streamlit's default WebSocket message limit (MB), and the room around a file's base64.
DEFAULT_MESSAGE_MB = 200
MESSAGE_MARGIN_MB = 8


def max_message_mb(max_upload_mb: float) -> int:
    """The WebSocket message limit (whole MB) that carries a file of `max_upload_mb`
    in base64, never below Streamlit's default."""
    return max(DEFAULT_MESSAGE_MB, math.ceil(max_upload_mb * 4 / 3) + MESSAGE_MARGIN_MB)


def streamlit_argv(host: str, port: int, max_upload_mb: float = 200.0) -> list[str]:
    """The ``streamlit run`` command line serving the Workbench on ``host:port``.

    Streamlit's own upload limit (whole megabytes) follows ``datasets.max_upload_mb``,
    the limit the api enforces, so a file the api would take is not refused earlier.
    So does the WebSocket's message limit: the file field sends a file's content, in
    base64 (4/3 of its size), on the session's WebSocket.
    """
    server = Path(__file__).with_name("server.py")
    args = ["streamlit", "run", str(server), "--server.address", host]
    args += ["--server.port", str(port)]
    args += ["--server.maxUploadSize", str(math.ceil(max_upload_mb))]
    args += ["--server.maxMessageSize", str(max_message_mb(max_upload_mb))]
    for name, value in STREAMLIT_OPTIONS.items():
        args += [f"--{name}", value]
    return args


def main() -> None:
    """Start Streamlit (headless) serving the app with the UI's extra routes."""
    cfg = load_config()
    set_build_info("ui", version("ballast-ui"))
    # /metrics on its own port (the Ingress routes the main one only); same process,
    # so it reads the rerun histogram the sessions of this server observe.
    if cfg.ui.metrics_port is not None:
        try:
            serve_metrics(cfg.ui.metrics_port, cfg.ui.host)
        except OSError as exc:
            sys.exit(
                f"error: cannot serve metrics on {cfg.ui.host}:{cfg.ui.metrics_port}: {exc.strerror or exc}"
            )
    sys.argv = streamlit_argv(cfg.ui.host, cfg.ui.port, cfg.datasets.max_upload_mb)
    sys.exit(stcli.main())


if __name__ == "__main__":
    main()
