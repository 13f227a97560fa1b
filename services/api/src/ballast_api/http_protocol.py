"""uvicorn's httptools protocol, sending each response in one write instead of two.

uvicorn writes a response's head and its body with a `transport.write` each. On a
keep-alive connection with TCP_NODELAY that is two `send` calls and two segments per
response: the server pays the second system call, the client a second wake-up and read.
`CoalescingHttpToolsProtocol` hands uvicorn a transport that keeps a small write back
until the next write in the same turn of the event loop, or the end of that turn: a head
and the body that follows it at once (every response but a stream's) leave together, and
a streamed response's head leaves at the end of the turn. Writes over `HOLD_MAX` bytes
(a big body, an export's chunks) are never held or copied.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Bytes up to which a write is held back (and copied once to join the next).
HOLD_MAX = 64 * 1024


class CoalescingTransport:
    """A transport that sends what is written in one turn of the loop in one write.

    Everything but writing, closing and aborting is the wrapped transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held, self._held = self._held, None
        if held is None:
            if len(data) > HOLD_MAX:
                self._transport.write(data)
            else:
                self._held = bytes(data)
                self._loop.call_soon(self.flush)
        elif len(data) > HOLD_MAX:
            self._transport.write(held)
            self._transport.write(data)
        else:
            self._transport.write(held + bytes(data))

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def flush(self) -> None:
        """Write what is held (the end of the loop's turn, or before closing)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol writing through a `CoalescingTransport` (uvicorn's `http=`)."""

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        coalescing: Any = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)


__all__ = ["HOLD_MAX", "CoalescingHttpToolsProtocol", "CoalescingTransport"]
