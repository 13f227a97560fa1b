"""`python -m ballast_api`: serve the api with uvicorn on the configured host and port."""

import shutil
import sys

import uvicorn

from ballast_api.serve import uvicorn_options
from ballast_common.config import load_config
from ballast_common.telemetry.metrics import prepare_multiprocess_dir, serve_metrics

config = load_config()
# Several workers: /metrics sums every worker's values (see telemetry.metrics).
metrics_dir = prepare_multiprocess_dir(config.api.workers)
# /metrics on its own port, served by this process: the only process with one worker,
# the workers' parent (reading their shared directory) with several.
if config.api.metrics_port is not None:
    try:
        serve_metrics(config.api.metrics_port, config.api.host)
    except OSError as exc:
        sys.exit(
            f"error: cannot serve metrics on {config.api.host}:{config.api.metrics_port}: {exc.strerror or exc}"
        )
uvicorn.run(
    "ballast_api.main:create_app",
    factory=True,
    host=config.api.host,
    **uvicorn_options(config),
)
if metrics_dir is not None:
    shutil.rmtree(metrics_dir, ignore_errors=True)
