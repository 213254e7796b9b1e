"""A lean HTTP/1.1 keep-alive transport for the vendor clients (an httpx transport).

httpx's default transport (httpcore) spends about a millisecond of CPU on each small request
under concurrency: choosing a connection checks every pooled socket for readability, and
every lock it sets up looks up the async library. At a thousand sends a second that is the
whole budget. This one keeps idle connections in a list per host, learns that the server
closed one from the event loop (an asyncio Protocol's callbacks, no polling), and parses
answers with httptools (the C parser uvicorn uses). It speaks what the vendors need: HTTP/1.1
over TCP or TLS, Content-Length or chunked answers, keep-alive.

Failures come out as the httpx exceptions the clients already map (sender/errors.py):
`ConnectError` / `ConnectTimeout` when the request never left (safe to retry), and
`ReadTimeout`, `ReadError`, `RemoteProtocolError` once it may have (held as unknown). A pooled
connection the server closed is never written to; one it closes at the very moment we write
is the same race any keep-alive client has.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

import httptools
import httpx

Origin = tuple[str, str, int]

_HEADER_END = b"\r\n"


class _Answer:
    """One response being parsed."""

    __slots__ = ("body", "complete", "headers", "keep_alive", "reason", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = True


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._answer: _Answer | None = None
        self._waiter: asyncio.Future[_Answer] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        if self._answer is not None and not self._answer.complete:
            try:  # an answer delimited by the end of the connection ends here
                self._parser.feed_data(b"")
            except httptools.HttpParserError:
                pass
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(
                httpx.RemoteProtocolError("the server closed the connection without an answer")
                if exc is None else httpx.ReadError(f"{type(exc).__name__}: {exc}"))

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        assert self._answer is not None
        self._answer.reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._answer is not None
        self._answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._answer is not None
        self._answer.status = self._parser.get_status_code()
        self._answer.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        assert self._answer is not None
        self._answer.body.append(body)

    def on_message_complete(self) -> None:
        answer = self._answer
        assert answer is not None
        answer.complete = True
        self._answer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(answer)

    # -- use -------------------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, data: bytes, *, read_timeout: float | None) -> _Answer:
        assert self.transport is not None
        self._answer = _Answer()
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = self._loop.create_future()
        self.transport.write(data)
        try:
            return await asyncio.wait_for(self._waiter, read_timeout)
        except TimeoutError:
            self.close()
            raise httpx.ReadTimeout("the server did not answer in time") from None
        finally:
            self._waiter = None


class KeepAliveTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int = 100, max_idle_per_origin: int = 50,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._max_idle = max_idle_per_origin
        self._ssl_context = ssl_context
        self._closed = False

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            head += [name, b": ", value, _HEADER_END]
        head.append(_HEADER_END)
        data = b"".join(head) + body
        if self._slots is not None:
            if self._slots.locked():  # all connections busy: wait, at most the pool timeout
                try:
                    await asyncio.wait_for(self._slots.acquire(), timeouts.get("pool"))
                except TimeoutError:
                    raise httpx.PoolTimeout("no free connection in time") from None
            else:
                await self._slots.acquire()
        try:
            connection = self._pooled(origin) or await self._connect(
                origin, timeouts.get("connect"))
            answer = await connection.exchange(data, read_timeout=timeouts.get("read"))
            if answer.keep_alive and not connection.closed:
                self._release(origin, connection)
            else:
                connection.close()
        finally:
            if self._slots is not None:
                self._slots.release()
        return httpx.Response(
            answer.status, headers=answer.headers, stream=httpx.ByteStream(b"".join(answer.body)),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason})

    def _pooled(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closed
            if not connection.closed:
                return connection
        return None

    def _release(self, origin: Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, deque())
        if self._closed or len(idle) >= self._max_idle:
            connection.close()
        else:
            idle.append(connection)

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {"ssl": self._ssl(), "server_hostname": host} \
            if scheme == "https" else {}
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), host, port, **tls), timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return connection

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

