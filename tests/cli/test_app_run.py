"""`ballast app run` for real: the api comes up, one Ctrl-C (or SIGTERM) stops everything."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ballast_testing.servers import free_port
from tests.cli.conftest import (
    BALLAST,
    alive,
    clean_environ,
    cmdline,
    kill_leftovers,
    pids_with_environ,
    wait_for,
)

START_TIMEOUT_S = 120


@dataclass
class Stack:
    proc: subprocess.Popen[str]
    api_port: int
    marker: str
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            if self.proc.poll() is not None and self.lines.empty():
                raise AssertionError(
                    f"ballast exited with {self.proc.returncode} before printing {text!r}:\n"
                    + "".join(self.seen)
                    + "".join(self.stderr)
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {text!r} within {timeout}s:\n" + "".join(self.seen)
                )
            try:
                self.seen.append(self.lines.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                continue

    def children(self) -> list[int]:
        """Processes started for this stack (they carry its tmp db path in their env)."""
        return [pid for pid in pids_with_environ(self.marker) if pid != self.proc.pid]


def _pump(stream: object, sink: queue.Queue[str] | list[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        if isinstance(sink, list):
            sink.append(line)
        else:
            sink.put(line)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    api_port, ui_port = free_port(), free_port()
    marker = str(tmp_path / "stack.db")
    env = {**clean_environ(), "BALLAST_DATABASE__URL": f"sqlite:///{marker}"}
    # As on a user's terminal piped into `tee`: stdout is block-buffered, so the banner
    # shows only because ballast flushes it.
    env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.Popen(
        [
            str(BALLAST),
            "app",
            "run",
            "--api-port",
            str(api_port),
            "--ui-port",
            str(ui_port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    s = Stack(proc, api_port, marker)
    threads = [
        threading.Thread(target=_pump, args=(proc.stdout, s.lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, s.stderr), daemon=True),
    ]
    for t in threads:
        t.start()
    seen_children: list[int] = []
    try:
        yield s
    finally:
        seen_children = s.children()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        kill_leftovers(seen_children)
        for t in threads:
            t.join(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def api_port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"]
)
def test_app_run_serves_and_one_signal_stops_everything(
    stack: Stack, sig: signal.Signals
) -> None:
    stack.wait_for_line("Press Ctrl-C to stop.", START_TIMEOUT_S)
    out = "".join(stack.seen)
    assert f"http://127.0.0.1:{stack.api_port}" in out
    assert "running (dev" in out

    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.api_port}/healthz", timeout=5
    ) as r:
        assert r.status == 200
    children = stack.children()
    assert children, "the api runs as a child process"
    assert any("ballast_api" in cmdline(pid) for pid in children)
    # The children are in their own sessions: a terminal's Ctrl-C would reach only ballast.
    assert all(os.getsid(pid) != os.getsid(stack.proc.pid) for pid in children)

    t0 = time.monotonic()
    stack.proc.send_signal(sig)
    assert stack.proc.wait(timeout=15) == 0, "".join(stack.stderr)
    assert time.monotonic() - t0 < 15

    assert not api_port_open(stack.api_port)
    wait_for(
        lambda: not any(alive(pid) for pid in children), 5, "the children to be gone"
    )
    assert stack.children() == []
    assert "Traceback" not in "".join(stack.seen) + "".join(stack.stderr)


def test_ctrl_c_while_starting_stops_the_children(stack: Stack) -> None:
    # As soon as the api child exists (long before it answers), press Ctrl-C.
    wait_for(
        lambda: any("ballast_api" in cmdline(pid) for pid in stack.children()),
        START_TIMEOUT_S,
        "the api child process",
    )
    children = stack.children()
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=15) == 130
    wait_for(
        lambda: not any(alive(pid) for pid in children), 5, "the children to be gone"
    )
    assert stack.children() == []
    assert not api_port_open(stack.api_port)
    err = "".join(stack.stderr)
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("error: interrupted"), err
