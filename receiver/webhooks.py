"""Vendor webhooks: token check -> read the body -> parse -> durable store -> 200.

A body that can't be read is quarantined (durably, too) and answered 400; one over 1 MiB is
answered 413 and its first MiB quarantined. Nothing slow happens on this path.
"""

from __future__ import annotations

import hmac
import logging
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.errors import BadPayload, NotFound, PayloadTooLarge, Unavailable
from receiver.ingest import Received
from receiver.runtime import Runtime
from receiver.settings import MAX_BODY_BYTES

logger = logging.getLogger(__name__)

# 云真机 gives up after 1 s (and blocks a URL that times out too often): answer in time.
STORE_TIMEOUT = {"wecom": 0.8, "whatsapp": 10.0, "sms": 10.0}

ITNIO_ACK = b'{"status":"0","reason":"success"}'
YZJ_ACK = b'{"errcode":0}'
KEPT_HEADERS = ("content-type", "content-length", "user-agent", "x-forwarded-for", "x-real-ip")


def _check_token(request: Request, runtime: Runtime) -> None:
    given = request.path_params.get("token", "").encode()
    if not hmac.compare_digest(given, runtime.webhook_token.encode()):
        raise NotFound("No such webhook.")


def _headers(request: Request) -> dict[str, str]:
    kept = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    if request.client is not None:
        kept["client"] = request.client.host
    return kept


async def _read_body(request: Request) -> tuple[bytes, bool]:
    """The body, and whether it went over the limit (then only its first MiB is returned)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            chunks.append(chunk[: max(0, MAX_BODY_BYTES - (size - len(chunk)))])
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


async def _ingest(request: Request, *, vendor: str, route: str, ack: bytes) -> Response:
    runtime: Runtime = request.state.runtime
    parse = runtime.parsers[(vendor, route)]
    started = time.perf_counter()
    outcome = "bad_token"  # for /metrics: the stored body's state, or why none was stored
    try:
        _check_token(request, runtime)
        outcome = "error"
        received_at = runtime.clock()
        body, too_large = await _read_body(request)
        item = Received(vendor=vendor, route=route, received_at=received_at,
                        headers=_headers(request), body=body)
        timeout = STORE_TIMEOUT[route]
        if too_large:
            item.error_code, item.error_detail = "payload_too_large", "over 1 MiB; first MiB kept"
            await runtime.ingestor.submit(item, timeout=timeout)
            outcome = "too_large"
            raise PayloadTooLarge("The body is over 1 MiB.")
        try:
            item.events = parse(body)
        except BadPayload as exc:
            item.error_code, item.error_detail = exc.code, exc.detail
            outcome = await runtime.ingestor.submit(item, timeout=timeout)
            raise
        except Exception as exc:  # our bug, not the vendor's: keep the body and acknowledge it
            logger.exception("parser failed; body stored for replay",
                             extra={"action": "webhook_parser_failed", "route": route})
            item.parser_failure = f"{type(exc).__name__}: {exc}"[:2000]
        outcome = await runtime.ingestor.submit(item, timeout=timeout)
        if outcome == "unstorable":
            raise BadPayload("The body holds values the store refuses; it was quarantined.",
                             code="unstorable")
        return Response(ack, media_type="application/json")
    except Unavailable:
        outcome = "unavailable"
        raise
    finally:
        metrics = getattr(runtime, "metrics", None)
        if metrics is not None:
            metrics.webhook(vendor, route, outcome, time.perf_counter() - started)


async def itnio_whatsapp(request: Request) -> Response:
    return await _ingest(request, vendor="itnio", route="whatsapp", ack=ITNIO_ACK)


async def itnio_sms(request: Request) -> Response:
    return await _ingest(request, vendor="itnio", route="sms", ack=ITNIO_ACK)


async def yzj(request: Request) -> Response:
    return await _ingest(request, vendor="yzj", route="wecom", ack=YZJ_ACK)


routes = [
    Route("/webhooks/itnio/whatsapp/{token}", itnio_whatsapp, methods=["POST"]),
    Route("/webhooks/itnio/sms/{token}", itnio_sms, methods=["POST"]),
    Route("/webhooks/yzj/{token}", yzj, methods=["POST"]),
]
