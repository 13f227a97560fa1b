"""Each response leaves the api in one write (`ballast_api.http_protocol`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ballast_api.http_protocol import (
    HOLD_MAX,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
)
from ballast_api.serve import uvicorn_options
from ballast_common.config import AppConfig
from ballast_testing.servers import free_port

BIG = b"x" * (HOLD_MAX * 3)


class Recording(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Any] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.writes.append("eof")

    def get_write_buffer_size(self) -> int:
        return 7


def _on_a_loop(body: Any) -> Any:
    async def main() -> Any:
        inner = Recording()
        return inner, await body(CoalescingTransport(inner, asyncio.get_running_loop()))

    return asyncio.run(main())


def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def body(t: CoalescingTransport) -> None:
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(memoryview(b"{}"))
        await asyncio.sleep(0)

    inner, _ = _on_a_loop(body)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]


def test_a_lone_write_leaves_at_the_end_of_the_turn() -> None:
    async def body(t: CoalescingTransport) -> list[Any]:
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        before = list(t._transport.writes)  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        return before

    inner, before = _on_a_loop(body)
    assert before == []
    assert inner.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_a_big_write_is_neither_held_nor_copied() -> None:
    async def body(t: CoalescingTransport) -> None:
        t.write(BIG)
        t.write(b"head")
        t.write(BIG)
        await asyncio.sleep(0)

    inner, _ = _on_a_loop(body)
    assert inner.writes == [BIG, b"head", BIG]
    assert inner.writes[0] is BIG
    assert inner.writes[2] is BIG


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def closing(t: CoalescingTransport) -> None:
        t.write(b"bye")
        t.close()
        await asyncio.sleep(0)

    inner, _ = _on_a_loop(closing)
    assert inner.writes == [b"bye"]
    assert inner.closed

    async def aborting(t: CoalescingTransport) -> None:
        t.write(b"bye")
        t.abort()
        await asyncio.sleep(0)

    inner, _ = _on_a_loop(aborting)
    assert inner.writes == []
    assert inner.aborted


def test_writelines_and_eof_keep_the_order() -> None:
    async def body(t: CoalescingTransport) -> None:
        t.write(b"a")
        t.writelines([b"b", b"c"])
        t.write(b"d")
        t.write_eof()
        await asyncio.sleep(0)

    inner, _ = _on_a_loop(body)
    assert inner.writes == [b"abc", b"d", "eof"]


def test_nothing_is_written_to_a_transport_that_is_closing() -> None:
    async def body(t: CoalescingTransport) -> int:
        t.write(b"late")
        t._transport.closed = True  # type: ignore[attr-defined] # the peer went away
        await asyncio.sleep(0)
        return t.get_write_buffer_size()

    inner, size = _on_a_loop(body)
    assert inner.writes == []
    assert size == 7  # everything else is the wrapped transport's


def test_the_api_is_served_with_it() -> None:
    options = uvicorn_options(AppConfig())
    assert options["http"] is CoalescingHttpToolsProtocol
    assert options["server_header"] is False
    assert options["proxy_headers"] is False


async def _json(_: Request) -> Response:
    return JSONResponse({"ok": True})


async def _stream(_: Request) -> Response:
    async def chunks() -> Any:
        for i in range(3):
            yield b"part %d;" % i
            await asyncio.sleep(0.01)

    return StreamingResponse(chunks(), media_type="text/plain")


async def _big(_: Request) -> Response:
    return Response(BIG, media_type="application/octet-stream")


async def _echo(request: Request) -> Response:
    return Response(await request.body(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/json", _json),
        Route("/stream", _stream),
        Route("/big", _big),
        Route("/echo", _echo, methods=["POST"]),
    ]
)


@contextlib.contextmanager
def _served(loop: str) -> Iterator[int]:
    """APP served by uvicorn with the api's options, in a thread; yields the port."""
    port = free_port()
    options = {**uvicorn_options(AppConfig()), "port": port, "workers": 1}
    server = uvicorn.Server(
        uvicorn.Config(APP, host="127.0.0.1", loop=loop, lifespan="off", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server thread ended"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_responses_arrive_whole(loop: str) -> None:
    with _served(loop) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        for _ in range(3):  # one keep-alive connection
            assert c.get("/json").json() == {"ok": True}
            assert c.get("/stream").content == b"part 0;part 1;part 2;"
            assert c.get("/big").content == BIG
            assert c.post("/echo", content=b"\0" * 100_000).content == b"\0" * 100_000


def test_each_small_response_is_one_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the socket itself: uvicorn alone sends a head and a body with a send each."""
    sends: list[int] = []
    real_send = socket.socket.send

    with _served("asyncio") as port:

        def send(sock: socket.socket, data: Any, *flags: int) -> int:
            if sock.getsockname()[1] == port:
                sends.append(len(data))
            return real_send(sock, data, *flags)

        monkeypatch.setattr(socket.socket, "send", send)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            for _ in range(5):
                assert c.get("/json").json() == {"ok": True}
        monkeypatch.undo()
    assert len(sends) == 5


def test_100_continue_is_sent_before_the_body_is() -> None:
    """The interim answer is a write of its own: it must not wait for the response."""
    with _served("uvloop") as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(10)
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        answer = b""
        while not answer.endswith(b"hello"):
            chunk = s.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK")


def test_pipelined_requests_get_their_answers_in_order() -> None:
    with _served("uvloop") as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(10)
        s.sendall(
            b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    first, second, third = (answer.index(b) for b in (b'{"ok":true}', b"abc", b"close"))
    assert first < second < third
