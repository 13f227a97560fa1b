"""The floor of a save over HTTP here: the save statement behind the leanest ASGI app.

`ratio_p99_1c` compares the api's save with a raw asyncpg transaction. Part of any
HTTP save is not the api's to cut: the request's trip through uvicorn and loopback TCP,
and the save statement itself (it writes three rows - form, audit, write id - where the
raw transaction writes one). This app measures that part alone, on the same server, in
the same alternating blocks: PUT /v1/forms/{form_id} parses the body with `json.loads`
and runs `forms.fast.SAVE_FORM_SQL` with the same parameters as the api's hot path, on
one asyncpg connection held for the app's life - no middleware, no authentication, no
validation model, no pool, no access line. What the api spends above it
(`save_p99_ms_1c - floor_p99_ms_1c`) is what the api's own code and framework cost.

Saves that arrive together each take a connection of their own: a stack of free ones,
opened as concurrency first needs them and kept for the app's life (one at 1 client,
as the api's held connection). So the same app, on the api's worker count, is the floor
of `saves_per_s_16c` too (`floor_saves_per_s_16c`).

It is a measuring instrument, not a server: it answers 201/200 for a saved form, 409 for
anything the statement leaves to the general path (a replayed write id, a stale
version), 404 for any other request but GET /healthz.

Run by `floor_process(dsn)` as `python -m bench.floor DSN USER PORT [WORKERS]`: uvicorn
with the api's own settings (httptools and uvloop when installed, no access log, no
server header). The user saving is `editor` of the demo seed unless told otherwise.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import uvicorn

from ballast_api.forms.fast import SAVE_FORM_SQL
from ballast_common.db import fingerprint
from ballast_testing.api import stop_process, wait_healthy
from ballast_testing.servers import LOOPBACK, free_port

PREFIX = "/v1/forms/"
_ROOT = Path(__file__).resolve().parent.parent


# Where the workers (processes of their own) find the database and the user.
DSN_ENV, USER_ENV = "BALLAST_FLOOR_DSN", "BALLAST_FLOOR_USER"


class _State:
    # Connections no save runs on (a stack: the last used first), and all opened.
    free: ClassVar[list[Any]] = []
    opened: ClassVar[list[Any]] = []
    user_id: uuid.UUID | None = None


def _env() -> Any:
    # A measuring instrument's own process environment, set by `main` for its workers
    # (spawned processes of their own), not the api's settings.
    return os.environ  # noqa: TID251


async def _start() -> None:
    conn = await asyncpg.connect(_env()[DSN_ENV])
    _State.free[:], _State.opened[:] = [conn], [conn]
    user = _env().get(USER_ENV, "editor")
    _State.user_id = await conn.fetchval(
        "SELECT id FROM users WHERE username = $1", user
    )
    if _State.user_id is None:
        raise RuntimeError(f"no user {user!r} in the database")


async def _fetchrow(*args: Any) -> Any:
    """The save statement on a free connection (a new one when none is free)."""
    if _State.free:
        conn = _State.free.pop()
    else:
        conn = await asyncpg.connect(_env()[DSN_ENV])
        _State.opened.append(conn)
    try:
        return await conn.fetchrow(*args)
    finally:
        _State.free.append(conn)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await _start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for conn in _State.opened:
                await conn.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _save(form_id: str, body: bytes, write_id: str | None) -> tuple[int, bytes]:
    data = json.loads(body)["data"]
    now = datetime.datetime.now(datetime.UTC)
    row = await _fetchrow(
        SAVE_FORM_SQL,
        write_id,
        form_id,
        json.dumps(data, separators=(",", ":")),
        _State.user_id,
        _State.user_id,
        None,
        False,
        now,
        now.isoformat(),
        uuid.uuid4(),
        fingerprint({"form_id": form_id, "data": data}) if write_id else "",
        None,
        None,
        LOOPBACK,
        None,
        False,
    )
    if row is None or row["kind"] not in ("create", "update", "unchanged"):
        return 409, b'{"detail": "left to the general path"}'
    return int(row["status_code"]), row["response"].encode()


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The floor app (ASGI)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path: str = scope["path"]
    if scope["method"] == "GET" and path == "/healthz":
        await _answer(send, 200, b'{"status": "ok"}')
        return
    if scope["method"] != "PUT" or not path.startswith(PREFIX):
        await _answer(send, 404, b'{"detail": "not found"}')
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    key = dict(scope["headers"]).get(b"idempotency-key")
    status, answer = await _save(
        path[len(PREFIX) :], b"".join(chunks), key.decode() if key else None
    )
    await _answer(send, status, answer)


@contextlib.contextmanager
def floor_process(
    dsn: str, user: str = "editor", timeout: float = 60.0, workers: int = 1
) -> Iterator[str]:
    """Serve the floor app on a free loopback port, on `workers` processes, until the
    block ends; its base URL.

    Raises:
        RuntimeError: the app exited before it answered (no such user, no database), or
            did not answer within `timeout` seconds.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", dsn, user, str(port), str(workers)],
        cwd=_ROOT,
        start_new_session=True,
    )
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_healthy(proc, f"{base}/healthz", timeout, "the floor app")
        yield base
    finally:
        stop_process(proc)


def main(argv: list[str]) -> None:
    """Serve the floor app: `python -m bench.floor DSN USER PORT [WORKERS]`."""
    _env().update({DSN_ENV: argv[0], USER_ENV: argv[1]})
    workers = int(argv[3]) if len(argv) > 3 else 1
    uvicorn.run(
        # Workers import the app by name (they are processes of their own).
        "bench.floor:app" if workers > 1 else app,
        host=LOOPBACK,
        port=int(argv[2]),
        workers=workers,
        # A start-up that fails (no such user) ends the process instead of being
        # taken for an app without a lifespan.
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main(sys.argv[1:])


__all__ = ["app", "floor_process"]
