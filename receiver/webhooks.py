"""Vendor webhooks: token check -> read the body -> parse -> durable store -> 200.

A body that can't be read is quarantined (durably, too) and answered 400; one over 1 MiB is
answered 413 and its first MiB quarantined. Nothing slow happens on this path: the body is
stored as received and its effects are applied afterwards (receiver/applier.py).

This is the hottest path of the service, so it is a plain ASGI handler that the app calls
before its router and middleware (see receiver/app.py): a callback costs a path match, a
parse and its share of one commit.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from receiver.errors import (
    ApiError,
    BadPayload,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from receiver.ingest import Received
from receiver.raw_response import render, send_json_bytes
from receiver.runtime import Runtime
from receiver.settings import MAX_BODY_BYTES

logger = logging.getLogger(__name__)

PREFIX = "/webhooks/"
# 云真机 gives up after 1 s (and blocks a URL that times out too often): answer in time.
STORE_TIMEOUT = {"wecom": 0.8, "whatsapp": 10.0, "sms": 10.0}

ITNIO_ACK = b'{"status":"0","reason":"success"}'
YZJ_ACK = b'{"errcode":0}'
# path prefix -> (vendor, route, acknowledgement); the token is the rest of the path
ENDPOINTS = {
    "/webhooks/itnio/whatsapp/": ("itnio", "whatsapp", ITNIO_ACK),
    "/webhooks/itnio/sms/": ("itnio", "sms", ITNIO_ACK),
    "/webhooks/yzj/": ("yzj", "wecom", YZJ_ACK),
}
KEPT_HEADERS = frozenset((b"content-type", b"content-length", b"user-agent",
                          b"x-forwarded-for", b"x-real-ip"))

Scope = dict[str, Any]
Receive = Any
Send = Any


def _endpoint(path: str) -> tuple[tuple[str, str, bytes], str]:
    for prefix, endpoint in ENDPOINTS.items():
        if path.startswith(prefix):
            token = path[len(prefix):]
            if token and "/" not in token:
                return endpoint, token
    raise NotFound("No such webhook.")


def _check_token(given: str, runtime: Runtime) -> None:
    if not hmac.compare_digest(given.encode(), runtime.webhook_token.encode()):
        raise NotFound("No such webhook.")


def _headers(scope: Scope) -> dict[str, str]:
    kept = {name.decode(): value.decode("latin-1")
            for name, value in scope["headers"] if name in KEPT_HEADERS}
    client = scope.get("client")
    if client:
        kept["client"] = client[0]
    return kept


class Disconnected(Exception):
    """The client went away before its body was all sent: there is nothing to store."""


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The body, and whether it went over the limit (then only its first MiB is returned)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            chunks.append(chunk[: max(0, MAX_BODY_BYTES - (size - len(chunk)))])
            return b"".join(chunks), True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks), False


async def _ingest(scope: Scope, receive: Receive, runtime: Runtime, *, vendor: str,
                  route: str, token: str) -> str:
    """Store the body; the outcome for /metrics. Raises the ApiError to answer with."""
    _check_token(token, runtime)
    received_at = runtime.clock()
    body, too_large = await _read_body(receive)
    item = Received(vendor=vendor, route=route, received_at=received_at,
                    headers=_headers(scope), body=body)
    timeout = STORE_TIMEOUT[route]
    if too_large:
        item.error_code, item.error_detail = "payload_too_large", "over 1 MiB; first MiB kept"
        await runtime.ingestor.submit(item, timeout=timeout)
        raise PayloadTooLarge("The body is over 1 MiB.")
    try:
        item.events = runtime.parsers[(vendor, route)](body)
    except BadPayload as exc:
        item.error_code, item.error_detail = exc.code, exc.detail
        await runtime.ingestor.submit(item, timeout=timeout)
        raise
    except Exception as exc:  # our bug, not the vendor's: keep the body and acknowledge it
        logger.exception("parser failed; body stored for replay",
                         extra={"action": "webhook_parser_failed", "route": route})
        item.parser_failure = f"{type(exc).__name__}: {exc}"[:2000]
    outcome = await runtime.ingestor.submit(item, timeout=timeout)
    if outcome == "unstorable":
        raise BadPayload("The body holds values the store refuses; it was quarantined.",
                         code="unstorable")
    return outcome


async def handle(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app for every path under /webhooks/."""
    runtime: Runtime = scope["state"]["runtime"]
    started = time.perf_counter()
    vendor = route = "unknown"
    outcome = "bad_token"  # for /metrics: the stored body's state, or why none was stored
    try:
        endpoint, token = _endpoint(scope["path"])
        if scope["method"] != "POST":
            raise MethodNotAllowed("Webhooks take POST only.")
        vendor, route, ack = endpoint
        outcome = await _ingest(scope, receive, runtime, vendor=vendor, route=route,
                                token=token)
        await send_json_bytes(send, 200, ack)
    except ApiError as exc:
        if isinstance(exc, Unavailable):
            outcome = "unavailable"
        elif isinstance(exc, PayloadTooLarge):
            outcome = "too_large"
        elif isinstance(exc, BadPayload):
            outcome = "unstorable" if exc.code == "unstorable" else "quarantined"
        extra = [(b"allow", b"POST")] if exc.status == 405 else None
        await send_json_bytes(send, exc.status, render(exc.body()), extra)
    except Disconnected:
        outcome = "error"
    except Exception as exc:
        outcome = "error"
        logger.error("unexpected error", exc_info=exc, extra={"action": "unexpected_error"})
        await send_json_bytes(send, 500, b'{"error":"internal","detail":"Something went wrong '
                                         b'on our side; it was logged."}')
    finally:
        metrics = runtime.metrics
        if metrics is not None and vendor != "unknown":
            metrics.webhook(vendor, route, outcome, time.perf_counter() - started)
