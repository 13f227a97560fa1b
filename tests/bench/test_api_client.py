"""The api benchmark's helpers (bench/api.py): its hand-written HTTP client reads answers
as a server may send them, and its series alternate in blocks after a warm-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.api import BLOCK_1C, WARMUP, _alternating, _Http

BODY = b'{"ok": true}'


def _answers() -> list[list[bytes]]:
    """Each answer as the chunks the server writes, with pauses between them."""
    length = str(len(BODY)).encode()
    return [
        # Content-Length last: the header block ends right after its value.
        [
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + length
            + b"\r\n\r\n"
            + BODY
        ],
        # Split inside the status line, the headers and the body.
        [
            b"HTTP/1.1 20",
            b"1 Created\r\nContent-Length: " + length + b"\r\nx-a: b",
            b"\r\n\r\n" + BODY[:4],
            BODY[4:],
        ],
        # No body at all.
        [b"HTTP/1.1 204 No Content\r\nx-a: b\r\n\r\n"],
    ]


async def _exchange() -> tuple[list[tuple[int, bytes]], list[bytes]]:
    requests: list[bytes] = []
    answers = _answers()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for chunks in answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            requests.append(head + await reader.readexactly(length))
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.01)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got = []
    async with server, _Http(f"http://127.0.0.1:{port}", "tok") as http:
        got.append(await http.request("PUT", "/v1/forms/a", b'{"n": 1}', "X-K: 1\r\n"))
        got.append(await http.request("GET", "/healthz"))
        got.append(await http.request("GET", "/healthz"))
        # The server closes after its last answer: a request sent before that is seen
        # and one sent after both fail, clearly (neither waits for ever).
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(http.request("GET", "/healthz"), 5)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(http.request("GET", "/healthz"), 5)
    return got, requests


def test_answers_in_pieces_are_read_whole() -> None:
    got, requests = asyncio.run(_exchange())
    assert got == [(200, BODY), (201, BODY), (204, b"")]
    first = requests[0]
    assert first.startswith(b"PUT /v1/forms/a HTTP/1.1\r\n")
    assert b"Authorization: Bearer tok\r\n" in first
    assert b"X-K: 1\r\n" in first
    assert b"Content-Type: application/json\r\n" in first
    assert first.endswith(b'\r\n\r\n{"n": 1}')
    assert b"Content-Type" not in requests[1]


def test_series_alternate_in_blocks_after_a_warm_up() -> None:
    calls: list[tuple[str, int]] = []

    def series(name: str) -> Any:
        async def run(i: int) -> float:
            calls.append((name, i))
            return float(i)

        return run

    n = BLOCK_1C * 2 + 7
    a, b = asyncio.run(_alternating((series("a"), series("b")), n))
    warm = WARMUP
    # Every series warms up (untimed), then is timed n times ...
    assert calls[: 2 * warm] == [(s, i) for i in range(warm) for s in "ab"]
    assert a == b == [float(i) for i in range(warm, warm + n)]
    # ... in blocks that alternate: a, b, a, b, a (7), b (7).
    timed = calls[2 * warm :]
    blocks = [timed[0][0]]
    for name, _ in timed[1:]:
        if name != blocks[-1]:
            blocks.append(name)
    assert blocks == ["a", "b", "a", "b", "a", "b"]
    assert [name for name, _ in timed[-14:]] == ["a"] * 7 + ["b"] * 7
