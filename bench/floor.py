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

It is a measuring instrument, not a server: it answers 201/200 for a saved form, 409 for
anything the statement leaves to the general path (a replayed write id, a stale
version), 404 for any other request but GET /healthz.

Run by `floor_process(dsn)` as `python -m bench.floor DSN USER PORT`: uvicorn with the
api's own settings (httptools and uvloop when installed, no access log, no server
header). The user saving is `editor` of the demo seed unless told otherwise.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn

from ballast_api.forms.fast import SAVE_FORM_SQL
from ballast_common.db import fingerprint
from ballast_testing.api import stop_process, wait_healthy
from ballast_testing.servers import LOOPBACK, free_port

PREFIX = "/v1/forms/"
_ROOT = Path(__file__).resolve().parent.parent


class _State:
    dsn = ""
    user = "editor"
    conn: Any = None
    user_id: uuid.UUID | None = None


async def _start() -> None:
    _State.conn = await asyncpg.connect(_State.dsn)
    _State.user_id = await _State.conn.fetchval(
        "SELECT id FROM users WHERE username = $1", _State.user
    )
    if _State.user_id is None:
        raise RuntimeError(f"no user {_State.user!r} in the database")


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await _start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _State.conn.close()
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
    row = await _State.conn.fetchrow(
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
    dsn: str, user: str = "editor", timeout: float = 60.0
) -> Iterator[str]:
    """Serve the floor app on a free loopback port until the block ends; its base URL.

    Raises:
        RuntimeError: the app exited before it answered (no such user, no database), or
            did not answer within `timeout` seconds.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", dsn, user, str(port)],
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
    """Serve the floor app: `python -m bench.floor DSN USER PORT`."""
    _State.dsn, _State.user, port = argv[0], argv[1], int(argv[2])
    uvicorn.run(
        app,
        host=LOOPBACK,
        port=port,
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
