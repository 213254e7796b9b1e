"""uvicorn's HTTP protocol, with what one turn of the event loop writes to a connection sent
as one write.

uvicorn (httptools) writes a response's status line and headers when the app sends
`http.response.start`, and its body when the app sends `http.response.body`: two `send`
system calls for one small answer, and the client woken twice. py-spy on the window lookups
found the two writes 54 % of the interpreter's time. Here the connection's transport keeps
what is written until the end of the loop's turn and then writes it in one go: lookups
13,400 -> 18,300/s, 73 -> 54 µs of CPU each (docs/performance.md, "Ninth pass").

`replywindow serve` runs uvicorn with it (`--http receiver.http_protocol:HttpProtocol` for
uvicorn's own command line). Nothing else changes: the same parser, keep-alive, flow
control and timeouts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

UVICORN_HTTP = "receiver.http_protocol:HttpProtocol"


class CoalescingTransport:
    """A transport whose `write`s in one turn of `loop` go out as one; everything else is
    the transport's own."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        held = sum(map(len, self._pending)) if self._pending else 0
        return int(self._transport.get_write_buffer_size()) + held

    def close(self) -> None:
        self._flush()  # what was written goes before the end, as with the transport itself
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
