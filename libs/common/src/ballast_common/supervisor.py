"""`ballast app run`: start the local stack's processes and stop them together.

Each component is a service package run as `python -m <package>`; a component whose
package (or its `__main__`) is not installed is skipped, so the stack grows as services
land without ballast_common importing any of them.

Children run in their own sessions (process groups), so a Ctrl-C in the terminal
reaches only the supervisor; it then stops every child (and anything the child spawned
in its group) with SIGTERM, and with SIGKILL after `grace_s` or on a second Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# A signal this soon after the first is the same Ctrl-C delivered twice: the terminal
# signals the whole foreground group, and `uv run` (as in `make run`) forwards it again.
REPEAT_WINDOW_S = 0.5


@dataclass
class Component:
    name: str
    module: str
    args: Sequence[str] = ()
    health_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(f"{self.module}.__main__") is not None
        except ModuleNotFoundError:
            return False

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]


class Supervisor:
    """Runs components as child processes; one Ctrl-C (or SIGTERM) stops them all.

    From `start()` until `stop()` returns, SIGINT and SIGTERM only request a stop (see
    `stopping`): the supervisor never dies half-way and leaves orphans behind. A second
    signal while stopping skips the grace period.
    """

    def __init__(
        self,
        components: Sequence[Component],
        *,
        echo: Callable[[str], None] = print,
        grace_s: float = 10.0,
    ) -> None:
        self.components = [c for c in components if c.available()]
        self.skipped = [c.name for c in components if not c.available()]
        self.echo = echo
        self.grace_s = grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False
        self._force = False
        self._signalled_at: float | None = None
        self._previous: dict[int, Any] = {}

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (Ctrl-C, SIGTERM, a dead child) or is under way."""
        return self._stopping

    def start(self) -> None:
        """Start every available component (stops the ones already started on failure)."""
        self._install_signal_handlers()
        try:
            for comp in self.components:
                if self._stopping:
                    break
                # Children inherit the configuration environment.
                env = {**os.environ, **comp.env}  # noqa: TID251
                # Own session: Ctrl-C reaches us once and we stop the children ourselves.
                self.procs[comp.name] = subprocess.Popen(
                    comp.command(), env=env, start_new_session=True
                )
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, timeout_s: float = 60.0) -> list[str]:
        """Wait for every component's health URL; returns the names that never answered.

        Returns early (with the names still pending) when a stop is requested.
        """
        deadline = time.monotonic() + timeout_s
        pending = {c.name: c.health_url for c in self.components if c.health_url}
        pending = {name: url for name, url in pending.items() if name in self.procs}
        while pending and not self._stopping and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                if self.procs[name].poll() is not None:
                    pending.pop(name)
                    continue
                if url and _answers(url):
                    pending.pop(name)
            if pending:
                time.sleep(0.2)
        failed = [n for n, p in self.procs.items() if p.poll() is not None]
        return sorted(set(pending) | set(failed))

    def run_forever(self, poll_s: float = 0.5) -> int:
        """Block until a child dies or we are told to stop; stop everything.

        Returns:
            0 after a requested stop; the dead child's exit code (at least 1) otherwise.
        """
        self._install_signal_handlers()
        code = 0
        try:
            while not self._stopping:
                dead = next(
                    (
                        (n, p.returncode)
                        for n, p in self.procs.items()
                        if p.poll() is not None
                    ),
                    None,
                )
                if dead is not None:
                    name, rc = dead
                    self.echo(f"{name} exited with code {rc}; stopping the stack")
                    code = rc if rc > 0 else 1
                    break
                time.sleep(poll_s)
            else:
                self.echo("stopping…")
        except KeyboardInterrupt:  # only when the handlers could not be installed
            self.echo("stopping…")
        finally:
            self.stop()
        return code

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._stopping and (
            self._signalled_at is None or now - self._signalled_at >= REPEAT_WINDOW_S
        ):
            self._force = True  # a second Ctrl-C: do not wait for a graceful stop
        if self._signalled_at is None:
            self._signalled_at = now
        self._stopping = True

    def _install_signal_handlers(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in _STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def stop(self) -> None:
        """SIGTERM every child, wait up to `grace_s`, then SIGKILL its process group.

        Only the child itself gets SIGTERM: it stops its own helpers (a Celery worker
        finishes its tasks, then its pool), which a signal to the group would cut short.
        """
        self._stopping = True
        try:
            for proc in self.procs.values():
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            while (
                not self._force
                and time.monotonic() < deadline
                and any(p.poll() is None for p in self.procs.values())
            ):
                time.sleep(0.05)
            for name, proc in self.procs.items():
                if proc.poll() is None:
                    self.echo(f"{name} did not stop in time; killing it")
                # Also whatever the child left behind in its group.
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        finally:
            self._restore_signal_handlers()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _answers(url: str) -> bool:
    try:
        # `url` is the http://127.0.0.1:port/ of a child this supervisor started.
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310
            return bool(200 <= resp.status < 500)
    except urllib.error.HTTPError as exc:  # 4xx: the server is up and answering
        exc.close()
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False
