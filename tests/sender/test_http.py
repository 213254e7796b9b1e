"""The vendor clients' network (sender/http.py: httpx on aiohttp) against a local server that
answers, or misbehaves, as a vendor might: what each failure means for a send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest
from sqlalchemy import create_engine

from receiver.metrics import Metrics, VendorMetricsTransport
from sender.errors import OutcomeUnknown, VendorUnavailable
from sender.http import VendorTransport, as_httpx_error, json_request, send
from sender.itnio import ItnioClient, WhatsAppAccepted

NOW = datetime(2026, 11, 24, tzinfo=UTC)
ACCEPTED = {"status": "0", "reason": "success",
            "data": {"messageId": "wamid.1", "timestamp": 1718000000}}
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


def _answer(body: dict[str, Any], status: int = 200) -> bytes:
    raw = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw


class Vendor:
    """A local server: each connection is handled by `behaviour`."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.behaviour(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(behaviour: Behaviour) -> AsyncIterator[tuple[str, Vendor]]:
    vendor = Vendor(behaviour)
    server = await asyncio.start_server(vendor.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", vendor
    finally:
        server.close()


@asynccontextmanager
async def itnio(base_url: str, *, read: float = 5.0) -> AsyncIterator[ItnioClient]:
    timeout = httpx.Timeout(read, connect=2.0)
    async with httpx.AsyncClient(timeout=timeout,
                                 transport=VendorTransport(limits=LIMITS)) as http:
        yield ItnioClient(http, base_url=base_url, api_key="k", api_secret="s",
                          wa_app_id="wa", sms_app_id="sms", clock=lambda: NOW)


async def _send(client: ItnioClient) -> WhatsAppAccepted:
    return await client.send_custom(business_phone="8613800000000", recipient="919700000001",
                                    message={"type": "text", "text": {"body": "hi"}})


def test_calls_go_out_and_share_one_kept_alive_connection() -> None:
    requests: list[Any] = []

    async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            requests.append(json.loads(await _read_request(reader) or b"null"))
            writer.write(_answer(ACCEPTED))
            await writer.drain()

    async def run() -> tuple[list[WhatsAppAccepted], int]:
        async with serving(keep_answering) as (url, vendor), itnio(url) as client:
            return [await _send(client) for _ in range(3)], vendor.connections

    answers, connections = asyncio.run(run())

    assert [a.message_id for a in answers] == ["wamid.1"] * 3
    assert connections == 1
    assert len(requests) == 3
    assert requests[0] == {"appId": "wa", "businessPhone": "8613800000000",
                                  "recipient": "919700000001", "channelType": 0,
                                  "type": "text", "text": {"body": "hi"}}


def test_the_request_goes_out_and_the_answer_comes_back_as_they_are() -> None:
    """The transport makes the exchange itself: the request's headers, query and bytes reach
    the vendor as httpx built them, and the answer's status, reason, headers and body come
    back as the vendor sent them, read whole."""
    heads: list[bytes] = []
    raw = b'{"status":"0","reason":"\xe6\x88\x90\xe5\x8a\x9f"}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head + await reader.readexactly(int(
            head.split(b"Content-Length: ")[1].split(b"\r\n")[0])))
        writer.write(b"HTTP/1.1 201 Made It\r\nX-Trace: a%20b\r\nX-Trace: c\r\n"
                     b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(raw)).encode() + b"\r\n\r\n" + raw)
        await writer.drain()

    async def run() -> httpx.Response:
        async with serving(answer) as (url, _vendor), httpx.AsyncClient(
                timeout=5, transport=VendorTransport(limits=LIMITS)) as http:
            return await send(http, json_request(
                http, "POST", f"{url}/wa/x?msgIds=a,b%2Cc", headers={"Sign": "s1"},
                body={"text": "你好"}))

    response = asyncio.run(run())

    [head] = heads
    assert head.startswith(b"POST /wa/x?msgIds=a,b%2Cc HTTP/1.1\r\n")
    assert b"\r\nSign: s1\r\n" in head and b"\r\nContent-Type: application/json\r\n" in head
    assert head.endswith(json.dumps({"text": "你好"}, ensure_ascii=False,
                                    separators=(",", ":")).encode())
    assert (response.status_code, response.reason_phrase) == (201, "Made It")
    assert response.headers.get_list("x-trace") == ["a%20b", "c"]
    assert response.content == raw and response.json() == {"status": "0", "reason": "成功"}
    assert response.is_closed


def test_a_vendor_transport_takes_no_proxy() -> None:
    with pytest.raises(ValueError, match="no proxy"):
        VendorTransport(limits=LIMITS, proxy=httpx.Proxy("http://proxy.example:3128"))


def test_a_refused_connection_is_unavailable_never_sent() -> None:
    async def run() -> None:
        async with serving(lambda r, w: asyncio.sleep(0)) as (url, _):
            pass  # the port is closed again: nothing listens
        async with itnio(url) as client:
            await _send(client)

    with pytest.raises(VendorUnavailable):
        asyncio.run(run())


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)  # the request arrived: the vendor may act on it


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(5)


async def _half_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(_answer(ACCEPTED)[:-10])
    await writer.drain()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
    await writer.drain()


@pytest.mark.parametrize("behaviour", [_hang_up, _silent, _half_body, _garbage],
                         ids=["hung up", "no answer in time", "half an answer", "not HTTP"])
def test_a_request_that_went_out_unanswered_is_an_outcome_unknown(behaviour: Behaviour) -> None:
    """Never "unavailable": that would send it again, and the vendor may have taken it."""
    async def run() -> None:
        async with serving(behaviour) as (url, _), itnio(url, read=0.3) as client:
            await _send(client)

    with pytest.raises(OutcomeUnknown):
        asyncio.run(run())


def test_a_connection_the_vendor_closed_while_idle_is_not_reused_blindly() -> None:
    """The vendor closes a kept-alive connection between two calls: the second call gets a
    fresh one (or, if it raced the close, is an outcome unknown; never a silent resend)."""
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_answer(ACCEPTED))
        await writer.drain()

    async def run() -> int:
        async with serving(answer_once) as (url, vendor), itnio(url) as client:
            await _send(client)
            await asyncio.sleep(0.1)  # the server's close reaches the pool
            await _send(client)
            return vendor.connections

    assert asyncio.run(run()) == 2


def test_aiohttp_errors_as_httpx_errors() -> None:
    request = httpx.Request("POST", "https://api.example/wa/custom/sendMsg")
    key = aiohttp.client_reqrep.ConnectionKey("api.example", 443, True, True, None, None, None)

    def mapped(exc: BaseException) -> type | None:
        translated = as_httpx_error(exc, request)
        return type(translated) if translated is not None else None

    assert mapped(aiohttp.ConnectionTimeoutError()) is httpx.ConnectTimeout
    assert mapped(aiohttp.ClientConnectorError(key, OSError(111, "refused"))) is \
        httpx.ConnectError
    assert mapped(aiohttp.ServerDisconnectedError()) is httpx.RemoteProtocolError
    assert mapped(aiohttp.SocketTimeoutError()) is httpx.ReadTimeout
    assert mapped(aiohttp.ClientOSError(104, "reset")) is httpx.ReadError
    assert mapped(aiohttp.ClientPayloadError()) is httpx.ReadError
    assert mapped(ValueError("ours")) is None


def test_the_metrics_transport_times_answers_and_counts_errors() -> None:
    metrics = Metrics(create_engine("sqlite://"), lambda: NOW)

    def vendor(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/busy":
            return httpx.Response(503)
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=ACCEPTED)

    async def run() -> None:
        transport = VendorMetricsTransport(httpx.MockTransport(vendor), metrics,
                                           lambda url: "itnio")
        async with httpx.AsyncClient(transport=transport) as http:
            await http.post("https://api.example/ok")
            await http.post("https://api.example/ok")
            await http.post("https://api.example/busy")
            with pytest.raises(httpx.ConnectError):
                await http.post("https://api.example/down")

    asyncio.run(run())
    text = metrics.registry.get_sample_value
    assert text("replywindow_vendor_request_duration_seconds_count",
                {"vendor": "itnio", "endpoint": "/ok", "status_class": "2xx"}) == 2
    assert text("replywindow_vendor_request_duration_seconds_count",
                {"vendor": "itnio", "endpoint": "/busy", "status_class": "5xx"}) == 1
    assert text("replywindow_vendor_errors_total",
                {"vendor": "itnio", "endpoint": "/busy", "kind": "5xx"}) == 1
    assert text("replywindow_vendor_errors_total",
                {"vendor": "itnio", "endpoint": "/down", "kind": "connect"}) == 1
    assert text("replywindow_vendor_errors_total",
                {"vendor": "itnio", "endpoint": "/ok", "kind": "2xx"}) is None


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json;charset=UTF-8", "Api-Key": "k", "Sign": "s"},
    {"user-agent": "ours", "X-Extra": "1"},  # one of the client's replaced, in its place
    {},
])
def test_json_request_is_what_build_request_builds(headers: dict[str, str]) -> None:
    http = httpx.AsyncClient(timeout=httpx.Timeout(7.0, connect=2.0))
    body = {"text": {"body": "héllo 你好"}, "n": 1, "none": None}
    url = "https://api.itniotech.com/wa/custom/sendMsg"

    built = http.build_request("POST", url, headers=headers, json=body)
    ours = json_request(http, "POST", url, headers=headers, body=body)

    assert (ours.method, ours.url, ours.headers.raw, ours.content, ours.extensions) == \
        (built.method, built.url, built.headers.raw, built.content, built.extensions)


def test_json_request_leaves_clients_with_cookies_or_a_base_url_to_build_request() -> None:
    body = {"a": 1}
    for http, url in ((httpx.AsyncClient(cookies={"session": "x"}), "https://api.example/wa/x"),
                      (httpx.AsyncClient(base_url="https://api.example/v2/"), "wa/x")):
        built = http.build_request("POST", url, headers={}, json=body)
        ours = json_request(http, "POST", url, headers={}, body=body)
        assert (ours.url, ours.headers.raw, ours.content) == \
            (built.url, built.headers.raw, built.content)


def _echo(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/fail":
        raise httpx.ConnectError("refused")  # no request attached, as a transport may
    return httpx.Response(200, headers=[("Set-Cookie", "sid=abc; Path=/")],
                          json={"path": request.url.path, "cookie": request.headers.get("cookie")})


def test_send_answers_as_the_clients_send_does() -> None:
    asyncio.run(_send_answers_as_the_clients_send_does())


async def _send_answers_as_the_clients_send_does() -> None:
    """`send`: the transport the client picks (a test's MockTransport, a mounted proxy), the
    response read, with its request and encoding, and the cookies it set kept
    by the client, as `http.send` does; transport errors carry the request."""
    mounted = httpx.MockTransport(lambda request: httpx.Response(200, text="via the mount"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(_echo),
                                 mounts={"https://proxied.example": mounted}) as ours, \
            httpx.AsyncClient(transport=httpx.MockTransport(_echo),
                              mounts={"https://proxied.example": mounted}) as theirs:
        for url in ("https://api.example/a", "https://api.example/b",
                    "https://proxied.example/c"):
            got = await send(ours, json_request(ours, "POST", url, headers={}, body={"x": 1}))
            want = await theirs.send(json_request(theirs, "POST", url, headers={},
                                                  body={"x": 1}))
            assert (got.status_code, got.headers.raw, got.content, got.encoding,
                    str(got.request.url), got.is_closed) == \
                (want.status_code, want.headers.raw, want.content, want.encoding,
                 str(want.request.url), want.is_closed)
        assert dict(ours.cookies) == dict(theirs.cookies) == {"sid": "abc"}
        request = json_request(ours, "POST", "https://api.example/fail", headers={}, body={})
        with pytest.raises(httpx.ConnectError) as failed:
            await send(ours, request)
        assert failed.value.request is request


def test_send_leaves_hooks_auth_and_redirects_to_the_client() -> None:
    asyncio.run(_send_leaves_hooks_auth_and_redirects_to_the_client())


async def _send_leaves_hooks_auth_and_redirects_to_the_client() -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    redirect = httpx.MockTransport(lambda request: (
        httpx.Response(302, headers={"Location": "https://api.example/there"})
        if request.url.path == "/here" else httpx.Response(200, text=request.headers.get(
            "authorization", "none"))))
    async with httpx.AsyncClient(transport=redirect, event_hooks={"request": [hook]}) as hooked:
        await send(hooked, json_request(hooked, "POST", "https://api.example/x", headers={},
                                        body={}))
    assert seen == ["https://api.example/x"]
    async with httpx.AsyncClient(transport=redirect, auth=("u", "p")) as authed:
        answer = await send(authed, json_request(authed, "POST", "https://api.example/x",
                                                 headers={}, body={}))
    assert answer.text.startswith("Basic ")
    async with httpx.AsyncClient(transport=redirect, follow_redirects=True) as following:
        answer = await send(following, json_request(following, "POST",
                                                    "https://api.example/here", headers={},
                                                    body={}))
    assert str(answer.url) == "https://api.example/there"
