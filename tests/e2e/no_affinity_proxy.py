"""A proxy without session affinity for the replica tests, at its worst case.

Each WebSocket goes to another replica than the one before (a refresh or a reconnect
lands on the other replica), and every other request goes to a replica that does not
hold the newest WebSocket: the session hand-off, the page's own routes and uploads are
always served by a process that did not serve the session. A plain round-robin balancer
produces exactly these cases, only not every time.

Each client connection carries one request: its head is read, ``Connection: close`` is
set (a WebSocket upgrade keeps its ``Upgrade``), and the bytes then flow both ways
until the backend closes. A browser therefore opens a connection per request, and
each request of a page (page load, WebSocket, the ui's own routes, uploads) is routed
on its own. Only loopback addresses are served and targeted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Sequence

from ballast_testing.servers import LOOPBACK, free_port

HEAD_LIMIT = 64 * 1024


def _close_after(head: bytes) -> bytes:
    """The request head with ``Connection: close``, unless it asks for an upgrade."""
    lines = head.split(b"\r\n")
    upgrade = any(line.lower().startswith(b"upgrade:") for line in lines[1:])
    if upgrade:
        return head
    kept = [line for line in lines if not line.lower().startswith(b"connection:")]
    # The head ends with an empty line (two CRLFs): insert before it.
    return b"\r\n".join([*kept[:-2], b"Connection: close", b"", b""])


class NoAffinityProxy:
    """Serve ``http://127.0.0.1:<port>`` in a thread of its own over `backends`
    (``(host, port)`` pairs, which may be changed while it runs: a replica taken out of
    rotation), routing every request as the module says. ``hits`` counts the requests each backend port got;
    ``served`` lists ``(port, method and path)`` of every request in order."""

    def __init__(
        self, backends: Sequence[tuple[str, int]], port: int | None = None
    ) -> None:
        self.backends = list(backends)
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.hits: Counter[int] = Counter()
        self.served: list[tuple[int, str]] = []
        self._count = itertools.count()
        self._session: tuple[str, int] | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> NoAffinityProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the round-robin proxy did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        """Stop listening, cut every open connection and let their tasks end.

        Cut, not closed: a closing transport first flushes what it holds, and a client
        that reads nothing (a page being torn down) would keep it, and its relay task,
        open for ever; its socket would then be left to the garbage collector.
        """
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, LOOPBACK, self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        try:
            await self._relay(reader, writer)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return
        if len(head) > HEAD_LIMIT:
            return
        host, port = self._route(head)
        self.hits[port] += 1
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.served.append((port, request_line.rsplit(" ", 1)[0]))
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self._writers.add(up_writer)
        try:
            up_writer.write(_close_after(head))
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer)
            )
        finally:
            self._writers.discard(up_writer)
            up_writer.close()

    def _route(self, head: bytes) -> tuple[str, int]:
        backends = list(self.backends)
        others = [b for b in backends if b != self._session] or backends
        if b"\r\nupgrade:" in head.lower():
            self._session = others[next(self._count) % len(others)]
            return self._session
        return others[next(self._count) % len(others)]

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()
