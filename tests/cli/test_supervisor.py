"""`Supervisor`: children in their own process groups, health waits, one signal stops all."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from ballast_common import supervisor as supervisor_mod
from ballast_common.supervisor import REPEAT_WINDOW_S, Component, Supervisor, _answers
from ballast_testing.servers import free_port
from tests.cli.conftest import alive, kill_leftovers, wait_for
from tests.cli.fake_modules import write_modules

pytestmark = pytest.mark.serial  # shutdowns within a few seconds


@pytest.fixture(autouse=True)
def _python_sigint() -> Iterator[None]:
    """Python's own SIGINT handler while a test runs, which the tests expect the
    supervisor to put back: a run started as a background job inherits SIGINT ignored,
    and Python then installs no handler of its own (9 tests failed that way)."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_modules(tmp_path_factory.mktemp("fake_modules"))


@pytest.fixture
def fakes(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake packages importable here (Component.available) and in children."""
    monkeypatch.syspath_prepend(str(fake_root))
    return fake_root


@pytest.fixture
def started() -> Iterator[list[Supervisor]]:
    """Supervisors a test creates; whatever is still running afterwards is killed."""
    sups: list[Supervisor] = []
    yield sups
    for sup in sups:
        kill_leftovers([p.pid for p in sup.procs.values()])
        for proc in sup.procs.values():
            if proc.poll() is None:
                proc.wait(timeout=10)


def comp(
    fakes: Path, name: str, module: str, *, health_url: str | None = None, **env: str
) -> Component:
    return Component(
        name,
        f"ballast_fake_{module}",
        health_url=health_url,
        env={"PYTHONPATH": str(fakes), **env},
    )


def http_comp(fakes: Path, name: str = "web") -> tuple[Component, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    return (
        comp(fakes, name, "http", health_url=f"{base}/healthz", FAKE_PORT=str(port)),
        base,
    )


def port_closed(base: str) -> bool:
    host, port = base.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) != 0


def make(started: list[Supervisor], comps: list[Component], **kw: float) -> Supervisor:
    messages: list[str] = []
    sup = Supervisor(comps, echo=messages.append, **kw)
    sup.messages = messages  # type: ignore[attr-defined]
    started.append(sup)
    return sup


def later(delay: float, sig: signal.Signals) -> threading.Timer:
    """Send `sig` to this process after `delay` (like a Ctrl-C in the terminal)."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), sig))
    timer.start()
    return timer


# -- components ---------------------------------------------------------------------------


def test_component_available_and_command(fakes: Path) -> None:
    c = comp(fakes, "x", "crash")
    assert c.available()
    assert c.command()[1:] == ["-m", "ballast_fake_crash"]
    assert Component("w", "ballast_fake_crash", args=("worker", "-q")).command()[
        -2:
    ] == [
        "worker",
        "-q",
    ]
    assert not Component("nope", "no_such_package_xyz").available()
    assert not Component("json", "json").available()  # a package without __main__


def test_unavailable_components_are_skipped(
    fakes: Path, started: list[Supervisor]
) -> None:
    sup = make(
        started, [comp(fakes, "crash", "crash"), Component("ui", "no_such_package_xyz")]
    )
    assert [c.name for c in sup.components] == ["crash"]
    assert sup.skipped == ["ui"]


# -- health -------------------------------------------------------------------------------


def test_answers(fakes: Path, started: list[Supervisor]) -> None:
    web, base = http_comp(fakes)
    sup = make(started, [web])
    sup.start()
    try:
        assert sup.wait_healthy(timeout_s=20) == []
        assert _answers(f"{base}/healthz")
        assert _answers(f"{base}/missing"), "a 404 still means the server is up"
        assert not _answers(f"{base}/boom"), "a 500 is not healthy"
    finally:
        sup.stop()
    assert port_closed(base)
    assert not _answers(f"{base}/healthz")


def test_wait_healthy_returns_the_names_that_failed(
    fakes: Path, started: list[Supervisor]
) -> None:
    web, _ = http_comp(fakes)
    silent_port = free_port()
    sup = make(
        started,
        [
            web,
            comp(fakes, "crash", "crash", health_url="http://127.0.0.1:1/healthz"),
            comp(
                fakes, "silent", "sleep", health_url=f"http://127.0.0.1:{silent_port}/"
            ),
            comp(fakes, "worker", "sleep"),
        ],
    )
    sup.start()
    try:
        t0 = time.monotonic()
        assert sup.wait_healthy(timeout_s=3) == ["crash", "silent"]
        assert time.monotonic() - t0 < 10
        assert not sup.stopping
    finally:
        sup.stop()
    assert all(p.poll() is not None for p in sup.procs.values())


def test_wait_healthy_reports_a_dead_child_without_health_url(
    fakes: Path, started: list[Supervisor]
) -> None:
    sup = make(started, [comp(fakes, "crash", "crash")])
    sup.start()
    wait_for(lambda: sup.procs["crash"].poll() is not None, 10, "the crash")
    assert sup.wait_healthy(timeout_s=1) == ["crash"]
    sup.stop()


# -- a dead component stops the stack -----------------------------------------------------


@pytest.mark.parametrize(("module", "code"), [("crash", 3), ("done", 1), ("killed", 1)])
def test_a_dead_component_stops_the_rest_and_exits_non_zero(
    fakes: Path, started: list[Supervisor], module: str, code: int
) -> None:
    web, base = http_comp(fakes)
    sup = make(started, [web, comp(fakes, "bad", module)])
    sup.start()
    assert sup.run_forever(poll_s=0.05) == code
    assert sup.procs["web"].poll() is not None, "the healthy component was stopped"
    assert port_closed(base)
    assert any(m.startswith("bad exited with code") for m in sup.messages)  # type: ignore[attr-defined]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- signals ----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_stops_everything_and_exits_zero(
    fakes: Path, started: list[Supervisor], sig: signal.Signals
) -> None:
    previous_term = signal.getsignal(signal.SIGTERM)
    web, base = http_comp(fakes)
    sup = make(started, [web, comp(fakes, "worker", "sleep")])
    sup.start()
    assert sup.wait_healthy(timeout_s=20) == []
    timer = later(0.3, sig)
    try:
        t0 = time.monotonic()
        assert sup.run_forever(poll_s=0.05) == 0
        assert time.monotonic() - t0 < 8
    finally:
        timer.cancel()
    assert "stopping…" in sup.messages  # type: ignore[attr-defined]
    assert all(p.poll() is not None for p in sup.procs.values())
    assert port_closed(base)
    # The process's own handlers are back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == previous_term


def test_a_signal_during_wait_healthy_returns_early(
    fakes: Path, started: list[Supervisor]
) -> None:
    port = free_port()
    sup = make(
        started,
        [comp(fakes, "silent", "sleep", health_url=f"http://127.0.0.1:{port}/")],
    )
    sup.start()
    timer = later(0.3, signal.SIGINT)
    try:
        t0 = time.monotonic()
        assert sup.wait_healthy(timeout_s=60) == ["silent"]
        assert time.monotonic() - t0 < 10
    finally:
        timer.cancel()
    assert sup.stopping
    sup.stop()
    assert sup.procs["silent"].poll() is not None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_before_start_starts_nothing(
    fakes: Path, started: list[Supervisor]
) -> None:
    sup = make(started, [comp(fakes, "worker", "sleep")])
    sup._on_signal(signal.SIGINT, None)
    sup.start()
    assert sup.procs == {}
    sup.stop()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_one_ctrl_c_delivered_twice_is_still_a_graceful_stop(
    fakes: Path, started: list[Supervisor]
) -> None:
    sup = make(started, [comp(fakes, "worker", "sleep")])
    sup._on_signal(signal.SIGINT, None)
    sup._on_signal(signal.SIGINT, None)  # forwarded by `uv run`, milliseconds later
    assert sup.stopping
    assert not sup._force
    time.sleep(REPEAT_WINDOW_S + 0.1)
    sup._on_signal(signal.SIGINT, None)  # the user presses Ctrl-C again
    assert sup._force


def test_children_ignoring_sigterm_are_killed_after_the_grace_period(
    fakes: Path, started: list[Supervisor], tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    sup = make(
        started,
        [comp(fakes, "stubborn", "stubborn", FAKE_READY=str(ready))],
        grace_s=0.5,
    )
    sup.start()
    wait_for(ready.exists, 10, "the child to ignore SIGTERM")
    t0 = time.monotonic()
    sup.stop()
    assert time.monotonic() - t0 < 5
    assert sup.procs["stubborn"].returncode == -signal.SIGKILL
    assert "stubborn did not stop in time; killing it" in sup.messages  # type: ignore[attr-defined]


def test_a_second_signal_skips_the_grace_period(
    fakes: Path, started: list[Supervisor], tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    sup = make(
        started,
        [comp(fakes, "stubborn", "stubborn", FAKE_READY=str(ready))],
        grace_s=60,
    )
    sup.start()
    wait_for(ready.exists, 10, "the child to ignore SIGTERM")
    first, second = later(0.2, signal.SIGINT), later(1.0, signal.SIGINT)
    try:
        t0 = time.monotonic()
        assert sup.run_forever(poll_s=0.05) == 0
        assert (
            time.monotonic() - t0 < 10
        ), "the second Ctrl-C did not cut the wait short"
    finally:
        first.cancel()
        second.cancel()
    assert sup.procs["stubborn"].returncode == -signal.SIGKILL


def test_stop_also_kills_what_a_child_left_in_its_group(
    fakes: Path, started: list[Supervisor], tmp_path: Path
) -> None:
    ready = tmp_path / "grandchild.pid"
    sup = make(
        started, [comp(fakes, "spawner", "spawner", FAKE_READY=str(ready))], grace_s=2
    )
    sup.start()
    wait_for(ready.exists, 10, "the grandchild")
    wait_for(lambda: ready.read_text() != "", 5, "the grandchild's pid")
    grandchild = int(ready.read_text())
    try:
        assert alive(grandchild)
        sup.stop()
        assert sup.procs["spawner"].returncode == -signal.SIGTERM
        wait_for(lambda: not alive(grandchild), 5, "the grandchild to die")
    finally:
        kill_leftovers([grandchild])


def test_a_failing_start_stops_what_it_started(
    fakes: Path, started: list[Supervisor], tmp_path: Path
) -> None:
    class Broken(Component):
        def command(self) -> list[str]:
            return [str(tmp_path / "no-such-python")]

    web, _ = http_comp(fakes)
    broken = Broken("broken", "ballast_fake_crash", env={"PYTHONPATH": str(fakes)})
    sup = make(started, [web, broken])
    with pytest.raises(FileNotFoundError):
        sup.start()
    assert sup.procs["web"].poll() is not None
    assert sup.stopping
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_no_handlers_are_installed(
    fakes: Path, started: list[Supervisor]
) -> None:
    sup = make(started, [comp(fakes, "crash", "crash")])
    result: list[int] = []

    def work() -> None:
        sup.start()
        result.append(sup.run_forever(poll_s=0.05))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert result == [3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_keyboard_interrupt_in_run_forever_still_stops_everything(
    fakes: Path, started: list[Supervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = make(started, [comp(fakes, "worker", "sleep")], grace_s=5)
    sup.start()
    calls = {"n": 0}

    def sleep(seconds: float) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        time.sleep(seconds)

    fake_time = types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep)
    monkeypatch.setattr(supervisor_mod, "time", fake_time)
    assert sup.run_forever(poll_s=0.05) == 0
    assert "stopping…" in sup.messages  # type: ignore[attr-defined]
    assert sup.procs["worker"].poll() is not None
