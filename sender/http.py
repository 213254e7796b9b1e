"""The network under the vendor clients: an httpx transport on aiohttp (`httpx-aiohttp`).

The clients keep speaking httpx (requests, responses, `httpx.MockTransport` fakes in tests);
only the connection pool and the HTTP/1.1 exchange underneath are aiohttp's, which costs a
fraction of httpcore's CPU a call (httpcore polls every pooled connection on every request).
The exchange is made here, not by httpx-aiohttp's transport (which gives its connection pool):
the vendors' answers are small JSON, read whole at once, where its streamed body went
through five layers of async iterators; with the request's timeouts built once per value,
that is ~15 % less CPU a call (measured: 192 -> 168 us against a bare local server).

What a failed call means is kept as httpx's own transport said it: `sender.errors` reads
"never sent" (connect errors and timeouts, a bad URL) as safe to retry and anything else as an
outcome unknown. (httpx-aiohttp's transport maps every `aiohttp.ClientConnectionError` to
`httpx.ConnectTimeout`, which would call a connection the vendor dropped after our request
went out "never sent", and re-send it; the mapping here says "unknown" for those.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
import yarl
from httpx._client import BoundAsyncStream, ClientState
from httpx._exceptions import request_context
from httpx_aiohttp import AiohttpTransport

_httpx_logger = logging.getLogger("httpx")

# aiohttp's error -> the httpx error httpcore raises in that situation (the first that
# matches wins, so subclasses come before their bases).
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    # No connection was made, or none could be had from the pool in time: never sent.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    # The request went out (or may have): the vendor may have acted on it.
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.ReadError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
)


def as_httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx error for an aiohttp one (None: not a network error of aiohttp's)."""
    for aiohttp_error, httpx_error in _ERRORS:
        if isinstance(exc, aiohttp_error):
            return httpx_error(f"{type(exc).__name__}: {exc}" if str(exc) else
                               type(exc).__name__, request=request)
    return None


class VendorTransport(AiohttpTransport):
    """`httpx_aiohttp.AiohttpTransport`'s connection pool, with the answer read whole and
    aiohttp's errors as httpcore's would be. No proxy (the vendor clients use none)."""

    def __init__(self, *, limits: httpx.Limits, **kwargs: Any) -> None:
        if kwargs.get("proxy") is not None:
            raise ValueError("VendorTransport takes no proxy")
        super().__init__(limits=limits, **kwargs)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        try:
            content = await request.aread()
            async with self.client.request(
                    request.method, _aiohttp_url(str(request.url)),
                    headers=[(name.decode("latin-1"), value.decode("latin-1"))
                             for name, value in request.headers.raw],
                    data=content or None, allow_redirects=False, auto_decompress=False,
                    compress=False, server_hostname=request.extensions.get("sni_hostname"),
                    timeout=_timeout(**request.extensions.get("timeout", {}))) as answer:
                body = await answer.read()
        except Exception as exc:
            translated = as_httpx_error(exc, request)
            if translated is None:
                raise
            raise translated from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode()
        response = httpx.Response(answer.status, headers=answer.raw_headers,
                                  stream=httpx.ByteStream(body), request=request,
                                  extensions=extensions)
        response.read()
        return response


@functools.lru_cache(maxsize=64)
def _timeout(connect: float | None = None, read: float | None = None,
             write: float | None = None, pool: float | None = None) -> aiohttp.ClientTimeout:
    """httpx's timeouts as httpx-aiohttp gives them to aiohttp (which has no write timeout)."""
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


@functools.lru_cache(maxsize=256)
def _aiohttp_url(url: str) -> yarl.URL:
    return yarl.URL(url, encoded=True)  # httpx's URL text is encoded already


@functools.lru_cache(maxsize=256)
def _url(url: str) -> httpx.URL:
    return httpx.URL(url)  # immutable: parsed once per endpoint, shared


# A request's extension that names its vendor, for the transport's metrics: the two vendors'
# base URLs may share a host (the simulator, a test, a proxy in front of both).
VENDOR_EXTENSION = "replywindow.vendor"


def requested_vendor(request: httpx.Request) -> str | None:
    """The vendor a request was built for (`json_request`'s or `tagged`'s `vendor`)."""
    return request.extensions.get(VENDOR_EXTENSION)


def tagged(vendor: str) -> dict[str, str]:
    """`extensions` for `build_request` that say which vendor the request is for."""
    return {VENDOR_EXTENSION: vendor}


def json_request(http: httpx.AsyncClient, method: str, url: str, *,
                 headers: Mapping[str, str], body: Any, vendor: str | None = None,
                 ) -> httpx.Request:
    """`http.build_request(method, url, headers=headers, json=body)`: the same request (URL,
    headers and their order, bytes, timeout), built for a fraction of its CPU (it merges and
    re-parses the URL and the client's headers on every call). A client with cookies, a base
    URL or query parameters of its own gets `build_request` itself. `vendor`, if given, goes
    with the request (`requested_vendor`)."""
    extensions = tagged(vendor) if vendor is not None else {}
    if http.cookies or http.params or str(http.base_url):
        return http.build_request(method, url, headers=headers, json=body,
                                  extensions=extensions)
    parsed = _url(url)
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                         allow_nan=False).encode()
    ours = {name.lower(): (name, value) for name, value in headers.items()}
    raw: list[tuple[Any, Any]] = [(b"Host", parsed.netloc)]
    for name, value in http.headers.raw:  # the client's, ours in place of the same name
        raw.append(ours.pop(name.decode("latin-1").lower(), None) or (name, value))
    raw += ours.values()
    raw.append(("Content-Length", str(len(content))))
    if not any(name.lower() == "content-type" for name in headers):
        raw.append(("Content-Type", "application/json"))
    request = httpx.Request(method, parsed, headers=raw, stream=httpx.ByteStream(content),
                            extensions={**extensions, "timeout": http.timeout.as_dict()})
    request.read()
    return request


def _plain(http: httpx.AsyncClient, request: httpx.Request) -> bool:
    """Whether `http.send(request)` would only hand the request to its transport and read the
    answer: no auth (the client's, or a user:password in the URL), no event hooks, no
    redirects followed, a timeout already on the request, and a client in use."""
    hooks = http.event_hooks
    return (http.auth is None and not hooks["request"] and not hooks["response"]
            and not http.follow_redirects and "timeout" in request.extensions
            and getattr(http, "_state", None) is ClientState.OPENED
            and not request.url.username and not request.url.password
            and hasattr(http, "_transport_for_url"))


async def send(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """`await http.send(request)`: the same response, read, for a fraction of the CPU. The
    client's layers for auth, redirects and event hooks are skipped when they would do
    nothing (any of them in use: `http.send` itself); what its last layer does is done here
    as it does it: the transport the client picks for the URL (a proxy mounted from the
    environment, a test's MockTransport), the request attached to transport errors, the
    response's request, elapsed time, cookies and default encoding, the INFO log line."""
    if not _plain(http, request):
        return await http.send(request)
    transport = http._transport_for_url(request.url)
    start = time.perf_counter()
    with request_context(request=request):
        response = await transport.handle_async_request(request)
    assert isinstance(response.stream, httpx.AsyncByteStream)
    response.request = request
    response.stream = BoundAsyncStream(response.stream, response=response, start=start)
    if "set-cookie" in response.headers:
        http.cookies.extract_cookies(response)
    response.default_encoding = http._default_encoding
    if _httpx_logger.isEnabledFor(logging.INFO):
        _httpx_logger.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url,
                           response.http_version, response.status_code,
                           response.reason_phrase)
    try:
        await response.aread()
    except BaseException:
        await response.aclose()
        raise
    return response
