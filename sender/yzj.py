"""云真机 / 智域管家 (oapi-yzj.miaokol.com): the access token and WeCom sends.

Not the ITNIO scheme: calls carry `app_id` and `access_token` in the body. The token lives
`expires_in` (7200 s) and one client shares it among all its callers. `errcode: 0` only means the
vendor's first check passed; a later `chatMsgSendFail` callback is what says a message failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from sender.errors import (
    YZJ_CODES,
    OutcomeUnknown,
    VendorError,
    VendorRejected,
    VendorUnavailable,
    status_error,
    transport_error,
    vendor_error,
)
from sender.http import json_request, send

logger = logging.getLogger(__name__)

VENDOR = "yzj"
MESSAGES_PER_CALL = 5  # seed 004: at most 5 messages per call
TOKEN_MARGIN = timedelta(seconds=300)  # renew this long before the vendor expires it
DEFAULT_EXPIRES_IN = 7200  # vendor-formats §4a
# errcodes that mean the token is invalid or expired: renew once and resend that call
TOKEN_CODES = frozenset(YZJ_CODES)


@dataclass(frozen=True)
class WecomAccepted:
    idx: int
    api_send_id: str
    api_send_svrid: str | None
    accepted: bool


class YzjClient:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, app_id: str, app_secret: str,
                 clock: Callable[[], datetime]) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._renew_at: datetime | None = None

    async def access_token(self) -> str:
        token = self._current()
        if token is not None:
            return token
        async with self._lock:
            # Whoever held the lock before us may have just renewed it.
            return self._current() or await self._fetch_token()

    async def send_messages(self, *, wxid: str, target_wxid: str,
                            messages: list[dict[str, Any]]) -> list[WecomAccepted]:
        """One result per message, in input order, `idx` counted over the whole input.

        Each message needs its own `api_send_id`: it is how the callbacks (chatMsg,
        chatMsgSendFail) find the message again.
        """
        for message in messages:
            if _text(message.get("api_send_id")) is None:
                raise ValueError("every message needs an api_send_id")
        results: list[WecomAccepted] = []
        for start in range(0, len(messages), MESSAGES_PER_CALL):
            chunk = messages[start:start + MESSAGES_PER_CALL]
            try:
                results += await self._send_call(wxid, target_wxid, chunk, offset=start)
            except VendorError as exc:
                exc.completed = tuple(results)
                raise
        return results

    async def _send_call(self, wxid: str, target_wxid: str, chunk: list[dict[str, Any]], *,
                         offset: int) -> list[WecomAccepted]:
        token = await self.access_token()
        try:
            answer = await self._call("/wechat/sendMessage",
                                      _send_body(self._app_id, token, wxid, target_wxid, chunk))
        except VendorRejected as exc:
            if exc.code not in TOKEN_CODES:
                raise
            # The vendor refused the token (another process renewed it, or it expired early):
            # nothing was queued, so renew once and resend this call.
            token = await self._renew(stale=token)
            answer = await self._call("/wechat/sendMessage",
                                      _send_body(self._app_id, token, wxid, target_wxid, chunk))
        data = answer.get("data")
        if not isinstance(data, list):
            raise OutcomeUnknown(vendor=VENDOR, reason="sendMessage answered without data")
        return _results(chunk, data, offset=offset)

    def _current(self) -> str | None:
        if self._token is None or self._renew_at is None or self._clock() >= self._renew_at:
            return None
        return self._token

    async def _renew(self, *, stale: str) -> str:
        async with self._lock:
            current = self._current()
            if current is not None and current != stale:  # another caller already renewed it
                return current
            self._token = None
            return await self._fetch_token()

    async def _fetch_token(self) -> str:
        fetched_at = self._clock()  # before the call: the vendor's 7200 s start no later
        try:
            answer = await self._exchange("/oauth/token", {
                "app_id": self._app_id,
                "app_secret": self._app_secret,
                "grand_type": "client_credentials",  # sic: the vendor's spelling
            })
        except OutcomeUnknown as exc:
            # Asking for a token sends no message: whatever happened, trying later is safe,
            # and must not leave the message it was for held as possibly sent.
            raise VendorUnavailable(vendor=VENDOR, reason=exc.reason) from exc
        errcode = _errcode(answer)
        if errcode is not None and errcode != "0":
            raise vendor_error(VENDOR, errcode, _message(answer))
        data = answer.get("data")
        payload: dict[str, Any] = data if isinstance(data, dict) else answer  # either shape
        token = _text(payload.get("access_token"))
        if token is None:
            raise VendorUnavailable(vendor=VENDOR, reason="token answer without access_token")
        expires_in = payload.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            expires_in = DEFAULT_EXPIRES_IN
        expires_in = min(max(expires_in, 0), 10 * DEFAULT_EXPIRES_IN)  # a silly value stays sane
        self._token = token
        self._renew_at = fetched_at + timedelta(seconds=expires_in) - TOKEN_MARGIN
        logger.info("yzj token renewed", extra={"action": "vendor_token_renewed",
                                                 "vendor": VENDOR})
        return token

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self._exchange(path, body)
        errcode = _errcode(answer)
        if errcode is None:
            raise OutcomeUnknown(vendor=VENDOR, reason=f"{path} answered without errcode")
        if errcode != "0":
            logger.info("yzj refused %s: %s", path, errcode,
                        extra={"action": "vendor_rejected", "vendor": VENDOR, "endpoint": path,
                               "code": errcode})
            raise vendor_error(VENDOR, errcode, _message(answer))
        return answer

    async def _exchange(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await send(self._http, json_request(
                self._http, "POST", self._base_url + path, body=body, vendor=VENDOR,
                headers={"Content-Type": "application/json; charset=UTF-8"}))
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            error = transport_error(exc, vendor=VENDOR)
            logger.warning("yzj %s failed: %s", path, type(exc).__name__,
                           extra={"action": "vendor_call_failed", "vendor": VENDOR,
                                  "endpoint": path, "error": type(error).__name__})
            raise error from exc
        try:
            answer = json.loads(response.content.decode("utf-8-sig"))
        except (ValueError, RecursionError):
            answer = None
        if not response.is_success:
            logger.warning("yzj %s answered HTTP %s", path, response.status_code,
                           extra={"action": "vendor_http_error", "vendor": VENDOR,
                                  "endpoint": path, "http_status": response.status_code})
            raise status_error(response.status_code, vendor=VENDOR, code=_errcode(answer),
                               reason=_message(answer) or f"HTTP {response.status_code}")
        if not isinstance(answer, dict):
            raise OutcomeUnknown(vendor=VENDOR, reason=f"{path} answer is not a JSON object",
                                 http_status=response.status_code)
        return answer


def _send_body(app_id: str, token: str, wxid: str, target_wxid: str,
               messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"app_id": app_id, "access_token": token, "wxid": wxid, "target_wxid": target_wxid,
            "messages": messages}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def _errcode(answer: Any) -> str | None:
    return _text(answer.get("errcode")) if isinstance(answer, dict) else None


def _message(answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return None
    # seed 004 names the field `message`; the WeChat family says `errmsg`
    return _text(answer.get("message")) or _text(answer.get("errmsg")) or _text(answer.get("msg"))


def _index(value: Any, size: int) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        return None
    return value


def _results(chunk: list[dict[str, Any]], data: list[Any], *,
             offset: int) -> list[WecomAccepted]:
    """Messages absent from `data` were refused by the vendor's first check (seed 004)."""
    send_ids = [_text(message.get("api_send_id")) or "" for message in chunk]
    svrids: dict[int, str | None] = {}
    for row in data:
        if not isinstance(row, dict):
            continue
        i = _index(row.get("idx"), len(chunk))
        if i is None:  # no usable idx: fall back to the id we gave it
            sent = _text(row.get("api_send_id"))
            i = next((j for j, sid in enumerate(send_ids) if sid == sent and j not in svrids),
                     None)
        if i is not None and i not in svrids:
            svrids[i] = _text(row.get("api_send_svrid"))
    return [WecomAccepted(offset + j, send_ids[j], svrids.get(j), j in svrids)
            for j in range(len(chunk))]
