"""receiver/http_protocol.py: what one turn of the event loop writes to a connection goes
out as one write, and uvicorn serves through it as before."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from receiver.http_protocol import CoalescingTransport
from tests.receiver.hostile_support import serve


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _run(scenario: object) -> None:
    asyncio.run(scenario)  # type: ignore[arg-type]


def test_writes_in_one_turn_of_the_loop_go_out_as_one_in_order() -> None:
    async def scenario() -> None:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.writelines([b"{", b"}"])
        assert fake.writes == []  # held until the turn ends
        assert transport.get_write_buffer_size() == 7 + 21
        await asyncio.sleep(0)
        assert fake.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert fake.writes[1:] == [b"next"]

    _run(scenario())


def test_close_sends_what_was_written_first_and_abort_drops_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeTransport()
        transport = CoalescingTransport(fake, loop)
        transport.write(b"last words")
        transport.close()
        assert (fake.writes, fake.closed) == ([b"last words"], True)
        transport.write(b"after the end")
        await asyncio.sleep(0)
        assert fake.writes == [b"last words"]  # a closing transport takes nothing more

        other = FakeTransport()
        dropped = CoalescingTransport(other, loop)
        dropped.write(b"never")
        dropped.abort()
        await asyncio.sleep(0)
        assert (other.writes, other.aborted) == ([], True)
        assert dropped.get_extra_info("peername") == "info:peername"

    _run(scenario())


async def _small(_: Request) -> Response:
    return JSONResponse({"status": "0", "reason": "success"})


async def _streamed(_: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"part {n}\n".encode()
            await asyncio.sleep(0.01)
    return StreamingResponse(parts(), media_type="text/plain")


BIG = bytes(range(256)) * 20_000  # 5 MB: more than a socket buffer takes at once


async def _big(_: Request) -> Response:
    return Response(BIG, media_type="application/octet-stream")


APP = Starlette(routes=[Route("/small", _small), Route("/streamed", _streamed),
                        Route("/big", _big)])


def test_uvicorn_serves_through_it_as_before() -> None:
    with serve(APP) as url:
        with httpx.Client(base_url=url) as client:  # one keep-alive connection
            for _ in range(3):
                assert client.get("/small").json() == {"status": "0", "reason": "success"}
            assert client.get("/streamed").text == "part 0\npart 1\npart 2\n"
            assert client.get("/big").content == BIG
            assert client.get("/small").status_code == 200
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            # Two requests in one packet: two whole answers, in order.
            sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            received = b""
            while received.count(b'"reason":"success"') < 2:
                chunk = sock.recv(65536)
                assert chunk
                received += chunk
            assert received.count(b"HTTP/1.1 200 OK") == 2
