"""Shared benchmark helpers: servers on loopback, percentiles, result files."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ballast_testing.api import api_process
from ballast_testing.servers import free_port
from ballast_testing.stats import percentile

RESULTS = Path(__file__).with_name("results")


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(dict(data), indent=2, sort_keys=True) + "\n")
    return path


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


__all__ = [
    "RESULTS",
    "api_process",
    "free_port",
    "percentile",
    "wait_http",
    "write_result",
]
