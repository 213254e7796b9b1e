"""sender/transport.py: the lean keep-alive transport, against a real loopback server that
answers the way vendors (and broken networks) do, through httpx and the ITNIO client."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sender.errors import OutcomeUnknown, VendorUnavailable
from sender.itnio import ItnioClient
from sender.transport import KeepAliveTransport

Handler = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]
OK = json.dumps({"status": "0", "reason": "success", "data": {"messageId": "wamid.1"}}).encode()


class Server:
    """A loopback HTTP/1.1 server: `answer(head, body, writer)` answers each request and says
    whether to keep the connection."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return "http://127.0.0.1:%d" % self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.answer(head, body, writer):
                    return
        finally:
            self.open -= 1
            writer.close()


def answer_with(status: int = 200, body: bytes = OK, *, headers: bytes = b"",
                keep: bool = True, delay: float = 0.0) -> Handler:
    async def answer(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        if delay:
            await asyncio.sleep(delay)
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n" % status + headers
                     + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return keep
    return answer


def itnio(http: httpx.AsyncClient, url: str) -> ItnioClient:
    return ItnioClient(http, base_url=url, api_key="k", api_secret="s", wa_app_id="app",
                       sms_app_id="sms", clock=lambda: datetime(2026, 11, 24, tzinfo=UTC))


def send_custom(client: ItnioClient) -> Awaitable[Any]:
    return client.send_custom(business_phone="91856321412", recipient="91856321432",
                              message={"type": "text", "text": {"body": "hi"}})


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


def client_of(transport: KeepAliveTransport, *, read: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(read, connect=2.0))


def test_requests_share_one_kept_alive_connection_and_carry_what_httpx_built() -> None:
    async def scenario() -> tuple[list[str], Server]:
        async with Server(answer_with()) as server, client_of(KeepAliveTransport()) as http:
            ids = [(await send_custom(itnio(http, server.url))).message_id for _ in range(3)]
        return ids, server

    ids, server = run(scenario)

    assert ids == ["wamid.1"] * 3
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /wa/custom/sendMsg HTTP/1.1\r\n")
    assert b"\r\nsign: " in first.lower() and b"\r\napi-key: k\r\n" in first.lower()
    assert json.loads(first.split(b"\r\n\r\n", 1)[1])["recipient"] == "91856321432"


def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    async def scenario() -> tuple[int, Server]:
        async with Server(answer_with(keep=False)) as server, \
                client_of(KeepAliveTransport()) as http:
            for _ in range(3):
                await send_custom(itnio(http, server.url))
                await asyncio.sleep(0.05)  # the close reaches us
        return len(server.requests), server

    count, server = run(scenario)

    assert count == 3 and server.connections == 3


def test_connection_close_in_the_answer_is_honoured() -> None:
    async def scenario() -> Server:
        async with Server(answer_with(headers=b"Connection: close\r\n")) as server, \
                client_of(KeepAliveTransport()) as http:
            for _ in range(2):
                await send_custom(itnio(http, server.url))
        return server

    assert run(scenario).connections == 2


def test_a_refused_connection_is_unavailable_nothing_was_sent() -> None:
    async def scenario() -> None:
        async with Server(answer_with()) as server:
            url = server.url
        async with client_of(KeepAliveTransport()) as http:
            await send_custom(itnio(http, url))

    with pytest.raises(VendorUnavailable):
        run(scenario)


def test_no_answer_in_time_is_an_unknown_outcome() -> None:
    async def scenario() -> None:
        async with Server(answer_with(delay=1.0)) as server, \
                client_of(KeepAliveTransport(), read=0.1) as http:
            await send_custom(itnio(http, server.url))

    with pytest.raises(OutcomeUnknown, match="ReadTimeout"):
        run(scenario)


def test_a_connection_closed_after_the_request_is_an_unknown_outcome() -> None:
    async def hang_up(_head: bytes, _body: bytes, _writer: asyncio.StreamWriter) -> bool:
        return False

    async def scenario() -> None:
        async with Server(hang_up) as server, client_of(KeepAliveTransport()) as http:
            await send_custom(itnio(http, server.url))

    with pytest.raises(OutcomeUnknown, match="RemoteProtocolError"):
        run(scenario)


def test_a_garbled_answer_is_an_unknown_outcome() -> None:
    async def garble(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        return True

    async def scenario() -> None:
        async with Server(garble) as server, client_of(KeepAliveTransport()) as http:
            await send_custom(itnio(http, server.url))

    with pytest.raises(OutcomeUnknown, match="RemoteProtocolError"):
        run(scenario)


def test_chunked_and_gzipped_answers_are_read() -> None:
    packed = gzip.compress(OK)

    async def chunked(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        half = len(packed) // 2
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Encoding: gzip\r\n\r\n")
        for part in (packed[:half], packed[half:]):
            writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def scenario() -> list[str]:
        async with Server(chunked) as server, client_of(KeepAliveTransport()) as http:
            return [(await send_custom(itnio(http, server.url))).message_id for _ in range(2)]

    assert run(scenario) == ["wamid.1", "wamid.1"]


def test_http_errors_reach_the_client_as_answers() -> None:
    async def scenario() -> None:
        async with Server(answer_with(503, b'{"status":"503"}')) as server, \
                client_of(KeepAliveTransport()) as http:
            await send_custom(itnio(http, server.url))

    with pytest.raises(VendorUnavailable) as raised:
        run(scenario)
    assert raised.value.http_status == 503


def test_concurrent_calls_stay_within_the_connection_limit() -> None:
    async def scenario() -> tuple[int, Server]:
        async with Server(answer_with(delay=0.01)) as server, \
                client_of(KeepAliveTransport(max_connections=4)) as http:
            client = itnio(http, server.url)
            done = await asyncio.gather(*(send_custom(client) for _ in range(40)))
        return len(done), server

    count, server = run(scenario)

    assert count == 40
    assert server.most_open <= 4 and server.connections <= 4


def _self_signed(tmp_path: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files (made with `cryptography`)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_https_with_the_certificate_checked(tmp_path: Any) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=cert)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK) + OK)
        await writer.drain()
        writer.close()

    async def scenario(context: ssl.SSLContext | None) -> str:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_side)
        port = server.sockets[0].getsockname()[1]
        try:
            async with client_of(KeepAliveTransport(ssl_context=context)) as http:
                return (await send_custom(itnio(http, f"https://127.0.0.1:{port}"))).message_id
        finally:
            server.close()

    assert asyncio.run(scenario(trusting)) == "wamid.1"
    with pytest.raises(VendorUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(scenario(None))  # the system's trust: a self-signed certificate fails
