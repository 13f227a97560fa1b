"""Replicas over real Redis: two api processes and two UI-side processes (plain processes
running the Workbench's cache-reading code, `ballast_ui.cache`). A write through either
api is never answered stale by either UI process once the write has returned; and Redis
restarting in the middle degrades the cache (answers stay right) and it recovers."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ballast_common.db import DB
from ballast_testing.api import api_process, stop_process
from ballast_testing.servers import LOOPBACK, RedisServer, free_port
from tests.api.conftest import _seeded
from tests.common.test_cache import _redis_on

pytestmark = pytest.mark.integration

# A UI-side process: the Workbench's cached projects list against one api. Commands on
# stdin, one JSON answer per line on stdout (after "= "; log lines go there too).
UI_PROCESS = textwrap.dedent("""
    import json, sys
    from prometheus_client import REGISTRY
    from ballast_common.config import AppConfig
    from ballast_ui import cache
    from ballast_ui.client import ApiClient, make_http

    base, token, user, redis_url = sys.argv[1:5]
    cache.ui_cache(AppConfig(redis_url=redis_url))
    asked = 0

    def count(request):
        global asked
        asked += 1

    http = make_http(base, timeout=30)
    http.event_hooks["request"].append(count)
    api = ApiClient(http, token)
    print("=", json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "list":
            page = cache.list_projects(api, user, size=100, order_by="name")
            names = {str(p.id): p.name for p in page.items}
            print("=", json.dumps({"names": names, "asked": asked}), flush=True)
        elif command == "errors":
            errors = REGISTRY.get_sample_value("ballast_cache_errors_total") or 0
            print("=", json.dumps({"errors": errors}), flush=True)
        elif command == "l2":
            print("=", json.dumps({"l2": cache.ui_cache().ping()}), flush=True)
""")


class UiProcess:
    def __init__(self, base: str, token: str, user: str, redis_url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", UI_PROCESS, base, token, user, redis_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._read() == {"ready": True}

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            assert line, "the UI process ended"
            if line.startswith("= "):
                return dict(json.loads(line[2:]))

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def names(self) -> tuple[dict[str, str], int]:
        answer = self.ask("list")
        return answer["names"], answer["asked"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        stop_process(self.proc)  # type: ignore[arg-type]
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _login(base: str) -> tuple[str, str]:
    resp = httpx.post(
        f"{base}/v1/sessions",
        json={"username": "editor", "password": "editor-demo-pass"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["token"], resp.json()["user"]["id"]


def _rename(base: str, token: str, pid: str, name: str) -> None:
    resp = httpx.patch(
        f"{base}/v1/projects/{pid}",
        json={"name": name},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text


@contextlib.contextmanager
def _stack(
    tmp_path: Path, redis_url: str, apis: int, uis: int
) -> Iterator[tuple[list[str], str, list[UiProcess]]]:
    """`apis` api processes on one database and `uis` UI processes (UI i reads through
    api i mod `apis`), all over `redis_url`; yields the api URLs, a token, the UIs."""
    url = f"sqlite:///{tmp_path}/replicas.db"
    _seeded(DB(url)).dispose()
    env = {
        "BALLAST_PATHS__DATA_DIR": str(tmp_path / "data"),
        "BALLAST_REDIS_URL": redis_url,
    }
    with contextlib.ExitStack() as stack:
        bases = [
            stack.enter_context(
                api_process(url, env=env, log_path=tmp_path / f"api{i}.log")
            )
            for i in range(apis)
        ]
        token, user = _login(bases[0])
        processes: list[UiProcess] = []
        stack.callback(lambda: [p.close() for p in processes])
        for i in range(uis):
            processes.append(UiProcess(bases[i % apis], token, user, redis_url))
        yield bases, token, processes


def _create(base: str, token: str, name: str) -> str:
    resp = httpx.post(
        f"{base}/v1/projects",
        json={"name": name},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_a_write_in_one_api_is_never_served_stale_by_any_ui_process(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with _stack(tmp_path, redis_server.url, apis=2, uis=2) as (bases, token, uis):
        pid = _create(bases[0], token, "v0")
        for n in range(1, 21):
            before = [ui.names() for ui in uis]  # both UIs hold the list now
            for names, _ in before:
                assert names[pid] == f"v{n - 1}"
            _rename(bases[n % 2], token, pid, f"v{n}")  # through either api
            asked = []
            for ui in uis:
                names, count = ui.names()
                assert names[pid] == f"v{n}", f"stale answer after write {n}"
                assert ui.names()[1] == count  # the fresh answer is cached again
                asked.append(count)
            # The bust made one UI ask the api once; the other read its answer (L2).
            assert sum(asked) == sum(count for _, count in before) + 1


def test_redis_restarting_during_use_degrades_then_recovers(tmp_path: Path) -> None:
    port = free_port()
    redis_url = f"redis://{LOOPBACK}:{port}/0"
    server = _redis_on(port, tmp_path)
    try:
        with _stack(tmp_path, redis_url, apis=1, uis=2) as (bases, token, uis):
            pid = _create(bases[0], token, "before")
            for ui in uis:
                ui.names()
                assert ui.names()[0][pid] == "before"  # cached
            errors = [ui.ask("errors")["errors"] for ui in uis]
            server.terminate()
            server.wait(timeout=10)
            # Each UI process notices (its bust listener loses Redis) ...
            deadline = time.monotonic() + 30
            for ui, seen in zip(uis, errors, strict=True):
                while ui.ask("errors")["errors"] <= seen:
                    assert time.monotonic() < deadline, "Redis loss never noticed"
                    time.sleep(0.05)
            # ... and while Redis is away, writes go on and answers stay right.
            _rename(bases[0], token, pid, "during")
            for ui in uis:
                assert ui.names()[0][pid] == "during"
                assert ui.ask("l2") == {"l2": "down"}
            server = _redis_on(port, tmp_path)
            # Back: each UI caches again, and a write busts it again.
            deadline = time.monotonic() + 30
            for ui in uis:
                while True:
                    _, asked = ui.names()
                    if ui.names()[1] == asked and ui.ask("l2") == {"l2": "ok"}:
                        break
                    assert time.monotonic() < deadline, "the cache never came back"
                    time.sleep(0.1)
            _rename(bases[0], token, pid, "after")
            for ui in uis:
                names, asked = ui.names()
                assert names[pid] == "after"
                assert ui.names()[1] == asked
    finally:
        server.terminate()
        server.wait(timeout=10)
