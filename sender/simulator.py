"""A stand-in for ITNIO TECH and 云真机 that speaks their APIs as seeds/ and vendor-formats.md
describe them, and calls back into replywindow the way they do. Used by tests and the demo.

Sends are answered at once; what the vendor would push later (status reports, DLRs, chat
echoes, template reviews) is queued in `pending_callbacks` and goes out when the test (or the
demo loop) calls `deliver_callbacks()`, so time and ordering stay in the caller's hands.

Injected trouble, per path: `down` (everything 503), `fail_next` (an HTTP error or a vendor
error body, nothing processed), `malformed_next` (200 with a non-JSON body, nothing processed),
`delay_next` (processed at once, answer held back: a client that times out has still sent
the message, which is the case the send policy must settle by status pushes, not resend).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.crypto import decode_key, encrypt
from sender._simulator_itnio import ITNIO_SMS_HOOK, ITNIO_WA_HOOK, ItnioMixin
from sender._simulator_yzj import YZJ_HOOK, YzjMixin

__all__ = ["BAD_JSON", "ITNIO_SMS_HOOK", "ITNIO_WA_HOOK", "YZJ_HOOK", "PendingCallback",
           "RecordedCall", "VendorSimulator"]

ITNIO_PUSH_TYPE = "application/json;charset=UTF-8"
YZJ_PUSH_TYPE = "application/json; charset=utf-8"
OUTCOMES = ("delivered", "read", "silent", "pending")


class _BadJson:
    def __repr__(self) -> str:
        return "BAD_JSON"


BAD_JSON: Any = _BadJson()  # the parsed body of a request whose body was not JSON


@dataclass
class RecordedCall:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON; the query parameters for a GET; the raw text if not JSON
    method: str = "POST"


@dataclass
class PendingCallback:
    url_path: str  # without the token, which deliver_callbacks appends
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Failure:
    http_status: int | None
    status: str | None
    reason: str | None


Handler = Callable[[Request, Any], Response]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class VendorSimulator(ItnioMixin, YzjMixin):
    def __init__(self, *, api_key: str = "sim-key", api_secret: str = "sim-secret",
                 wa_app_id: str = "simWA001", sms_app_id: str = "simSMS01",
                 yzj_app_id: str = "sim-yzj", yzj_app_secret: str = "sim-yzj-secret",
                 yzj_aes_key: str | None = None, callback_base_url: str | None = None,
                 webhook_token: str | None = None, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.wa_app_id, self.sms_app_id = wa_app_id, sms_app_id
        self.yzj_app_id, self.yzj_app_secret = yzj_app_id, yzj_app_secret
        self.yzj_aes_key = yzj_aes_key
        self.callback_base_url, self.webhook_token = callback_base_url, webhook_token
        self.http, self.clock = http, clock
        self.calls: list[RecordedCall] = []
        self.down = False
        self.pending_callbacks: list[PendingCallback] = []
        self._sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._outcomes: dict[str, str] = {}
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._delays: dict[str, deque[float]] = defaultdict(deque)
        self._malformed: dict[str, int] = defaultdict(int)
        self._seq = itertools.count(1)
        ItnioMixin._init_itnio(self)
        YzjMixin._init_yzj(self)
        self._handlers: dict[str, tuple[str, str, Handler]] = {}
        for vendor, method, path, handler in self._itnio_routes() + self._yzj_routes():
            self._handlers[path] = (vendor, method, handler)
        self.app = Starlette(routes=[
            Route(path, self._endpoint(path), methods=[method])
            for path, (_, method, _) in self._handlers.items()
        ])

    # ---- trouble, for tests -------------------------------------------------------------

    def _known(self, path: str) -> str:
        if path not in self._handlers:
            raise ValueError(f"the simulator has no endpoint {path!r}; "
                             f"known: {', '.join(sorted(self._handlers))}")
        return path

    def fail_next(self, path: str, *, http_status: int | None = None, status: str | None = None,
                  reason: str | None = None, times: int = 1) -> None:
        if (http_status is None) == (status is None):
            raise ValueError("give exactly one of http_status and status")
        failure = _Failure(http_status, None if status is None else str(status), reason)
        self._failures[self._known(path)].extend([failure] * times)

    def delay_next(self, path: str, seconds: float, *, times: int = 1) -> None:
        self._delays[self._known(path)].extend([seconds] * times)

    def malformed_next(self, path: str, *, times: int = 1) -> None:
        self._malformed[self._known(path)] += times

    def set_outcome(self, recipient: str, outcome: str) -> None:
        if outcome not in OUTCOMES and outcome != "failed" and not outcome.startswith("failed:"):
            raise ValueError(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOMES)}, "
                             "failed:<code or reason>")
        self._outcomes[recipient] = outcome

    def _outcome(self, recipient: str) -> str:
        return self._outcomes.get(recipient, "delivered")

    def sent(self, channel: str) -> list[dict[str, Any]]:
        if channel not in ("whatsapp", "sms", "wecom"):
            raise ValueError(f"unknown channel {channel!r}")
        return list(self._sent[channel])

    # ---- the HTTP side ------------------------------------------------------------------

    def _endpoint(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        vendor, _, handler = self._handlers[path]

        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            if request.method == "GET":
                body: Any = dict(request.query_params)
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = BAD_JSON
            recorded = raw.decode(errors="replace") if body is BAD_JSON else body
            self.calls.append(RecordedCall(path, dict(request.headers), recorded, request.method))
            if self.down:
                return _http_error(503)
            if self._failures[path]:
                response = self._failure_response(vendor, self._failures[path].popleft())
            elif self._malformed[path]:
                self._malformed[path] -= 1
                # What a gateway in front of the vendor answers: not the vendor's JSON.
                response = Response("<html><body><h1>200 OK</h1>upstream says hi</body></html>",
                                    media_type="text/html")
            else:
                response = handler(request, body)
            if self._delays[path]:
                await asyncio.sleep(self._delays[path].popleft())
            return response

        return endpoint

    def _failure_response(self, vendor: str, failure: _Failure) -> Response:
        if failure.http_status is not None:
            return _http_error(failure.http_status)
        assert failure.status is not None
        if vendor == "yzj":
            return self._yzj_answer({"errcode": int(failure.status),
                                     "message": failure.reason or "simulated error"})
        return self._itnio_answer(failure.status, failure.reason or "simulated error")

    # ---- ids, time and callbacks ----------------------------------------------------------

    def _now(self) -> datetime:
        return self.clock()

    def _now_s(self) -> int:
        return int(self.clock().timestamp())

    def _digits_id(self) -> str:
        """A 19-digit id in ITNIO's style (yymmddHHMMSS + sequence), unique per simulator."""
        return f"{self.clock():%y%m%d%H%M%S}{1000000 + next(self._seq):07d}"

    def _queue(self, url_path: str, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if url_path == YZJ_HOOK:
            if self.yzj_aes_key is not None:
                data = encrypt(data, decode_key(self.yzj_aes_key))
            self.pending_callbacks.append(PendingCallback(url_path, data, YZJ_PUSH_TYPE))
        else:
            self.pending_callbacks.append(PendingCallback(
                url_path, data, ITNIO_PUSH_TYPE, {"User-Agent": "Java/1.8.0_232"}))

    async def deliver_callbacks(self) -> int:
        """POST every queued callback, in order; those that fail stay queued (in order)."""
        if not self.callback_base_url or not self.webhook_token:
            raise RuntimeError("deliver_callbacks needs callback_base_url and webhook_token")
        batch = list(self.pending_callbacks)
        failed: list[PendingCallback] = []
        delivered = 0
        client = self.http or httpx.AsyncClient(timeout=5.0)
        base = self.callback_base_url.rstrip("/")
        try:
            for callback in batch:
                url = f"{base}{callback.url_path}/{self.webhook_token}"
                headers = {"Content-Type": callback.content_type, **callback.headers}
                try:
                    answer = await client.post(url, content=callback.body, headers=headers)
                except httpx.HTTPError:
                    failed.append(callback)
                    continue
                if 200 <= answer.status_code < 300:
                    delivered += 1
                else:
                    failed.append(callback)
        finally:
            if self.http is None:
                await client.aclose()
        # Callbacks queued while we were delivering stay behind the ones that failed.
        taken = {id(callback) for callback in batch}
        self.pending_callbacks[:] = failed + [
            c for c in self.pending_callbacks if id(c) not in taken]
        return delivered


def _http_error(status: int) -> Response:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return Response(f"{status} {phrase}", status_code=status, media_type="text/plain",
                    headers=headers)
