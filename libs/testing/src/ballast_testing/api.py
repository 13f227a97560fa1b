"""The state API as a real process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ballast_testing.servers import LOOPBACK, free_port

START_TIMEOUT = 60.0


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL when it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_healthy(
    proc: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    what: str,
    tail: Callable[[], str] = str,
) -> None:
    """Wait until GET `url` answers 200 while `proc` runs.

    Raises:
        RuntimeError: `proc` exited first, or `timeout` seconds passed; the message
            names `what` and ends with `tail()` (e.g. the end of its log).
    """
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not healthy in {timeout:.0f} s: {tail()}")
        time.sleep(0.1)


@contextlib.contextmanager
def api_process(
    database_url: str,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Run `python -m ballast_api` until the block ends; yields its base URL.

    The child inherits this process's environment plus the database URL, loopback
    host and port, the worker count and ``env``. Its output goes to ``log_path``
    (default: a temporary file); an exit before it is healthy raises with the log's tail.
    """
    port = free_port()
    child_env = dict(os.environ)  # noqa: TID251 - the child inherits our environment
    child_env.update(
        {
            "BALLAST_DATABASE__URL": database_url,
            "BALLAST_API__HOST": LOOPBACK,
            "BALLAST_API__PORT": str(port),
            "BALLAST_API__WORKERS": str(workers),
            "BALLAST_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
    )
    with contextlib.ExitStack() as stack:
        if log_path is None:
            tmp = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="ballast-api-")
            )
            log_path = Path(tmp) / "api.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ballast_api"],
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://{LOOPBACK}:{port}"
        try:
            logged = log_path
            wait_healthy(
                proc,
                f"{base}/healthz",
                START_TIMEOUT,
                "api",
                lambda: logged.read_text()[-2000:],
            )
            yield base
        finally:
            stop_process(proc)
