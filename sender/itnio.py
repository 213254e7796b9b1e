"""ITNIO TECH (api.itniotech.com): WhatsApp custom and template sends, templates, SMS.

One method per endpoint. Every call is signed with the injected clock, and every way a call can
fail comes out as a `sender.errors.VendorError`; no httpx exception or KeyError escapes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from sender.errors import (
    ITNIO_CODES,
    ITNIO_TEMPLATE_CODES,
    OutcomeUnknown,
    VendorError,
    status_error,
    transport_error,
    vendor_error,
)
from sender.http import json_request, send, tagged

logger = logging.getLogger(__name__)

VENDOR = "itnio"
SMS_NUMBERS_PER_CALL = 1000  # vendor-formats §3a: POST takes up to 1000 numbers per call
REPORT_IDS_PER_CALL = 200  # vendor-formats §3d
_RESERVED = frozenset({"appId", "businessPhone", "recipient", "channelType"})
_CATEGORIES = {"0": "AUTHENTICATION", "1": "MARKETING", "2": "UTILITY"}
_COMPONENTS = ("header", "body", "footer", "buttons", "cards")
_REPORT_STATUS = {"0": "delivered", "-1": "pending", "1": "failed"}
_REPAIRS = 20


def sign(api_key: str, api_secret: str, timestamp: str) -> str:
    """md5(apiKey + apiSecret + timestamp), lowercase hex: the vendor's scheme, not our choice."""
    raw = (api_key + api_secret + timestamp).encode()
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class WhatsAppAccepted:
    message_id: str
    timestamp: datetime | None


@dataclass(frozen=True)
class SmsItem:
    number: str
    content: str
    sender_id: str | None = None
    order_id: str | None = None


@dataclass(frozen=True)
class SmsSubmitted:
    number: str
    order_id: str | None
    msg_id: str | None
    accepted: bool
    reason: str | None


@dataclass(frozen=True)
class SmsReport:
    msg_id: str
    number: str | None
    status: str  # "delivered" | "failed" | "pending"
    received_at: datetime | None


@dataclass(frozen=True)
class RemoteTemplate:
    template_id: str | None
    name: str
    language: str
    status: str
    category: str | None
    components: dict[str, Any]
    reason: str | None


class ItnioClient:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, api_key: str, api_secret: str,
                 wa_app_id: str | None, sms_app_id: str | None,
                 clock: Callable[[], datetime]) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._api_secret = api_secret
        self._wa_app_id = wa_app_id
        self._sms_app_id = sms_app_id
        self._clock = clock

    async def send_custom(self, *, business_phone: str, recipient: str, message: dict[str, Any],
                          reply_to: str | None = None) -> WhatsAppAccepted:
        """A free-form message; the vendor only takes it within 24 h of the user's last one."""
        if _RESERVED & message.keys():
            raise ValueError(f"message must not carry {sorted(_RESERVED & message.keys())}")
        body = {"appId": _need(self._wa_app_id, "wa_app_id"), "businessPhone": business_phone,
                "recipient": recipient, "channelType": 0, **message}
        if reply_to is not None:
            body["context"] = {"refMessageId": reply_to}
        return _accepted(await self._call("POST", "wa/custom/sendMsg", body=body))

    async def send_template(self, *, business_phone: str, recipient: str, name: str,
                            language: str, components: list[dict[str, Any]]) -> WhatsAppAccepted:
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if components:  # the vendor wants them only when there are variables
            template["components"] = components
        body = {"appId": _need(self._wa_app_id, "wa_app_id"), "businessPhone": business_phone,
                "recipient": recipient, "channelType": 0, "template": template}
        return _accepted(await self._call("POST", "wa/template/sendMsg", body=body))

    async def add_template(self, template: dict[str, Any]) -> dict[str, Any]:
        body = {**template, "appId": _need(self._wa_app_id, "wa_app_id"), "channelType": 0}
        answer = await self._call("POST", "wa/template/add", body=body, codes=ITNIO_TEMPLATE_CODES)
        data = answer.get("data")
        if not isinstance(data, dict):
            raise OutcomeUnknown(vendor=VENDOR, reason="template/add answered without data")
        return data

    async def query_templates(self, *, template_id: str | None = None,
                              language: str | None = None) -> list[RemoteTemplate]:
        body = {"appId": _need(self._wa_app_id, "wa_app_id")}
        if template_id is not None:
            body["templateId"] = template_id
        if language is not None:
            body["languageCode"] = language
        answer = await self._call("POST", "wa/template/query", body=body,
                                  codes=ITNIO_TEMPLATE_CODES)
        data = answer.get("data")
        if data is None:
            return []
        if not isinstance(data, dict | list):
            raise OutcomeUnknown(vendor=VENDOR, reason="template/query data is not a list")
        found = []
        for entry in [data] if isinstance(data, dict) else data:
            languages = entry.get("templateLanList") if isinstance(entry, dict) else None
            if isinstance(languages, list):
                found += [_template(entry, lan) for lan in languages if isinstance(lan, dict)]
        return found

    async def send_sms(self, items: list[SmsItem]) -> list[SmsSubmitted]:
        """One result per item, in input order. Items sharing content and sender travel in one
        `array` entry; a call carries at most 1000 numbers."""
        if not items:
            return []
        app_id = _need(self._sms_app_id, "sms_app_id")
        for item in items:
            if "," in item.number or "," in (item.order_id or ""):
                raise ValueError("SMS numbers and order ids must not contain commas")
        groups: dict[tuple[str, str | None, bool], list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(_sms_key(item), []).append(i)
        ordered = [(i, items[i]) for indices in groups.values() for i in indices]
        done: dict[int, SmsSubmitted] = {}
        for start in range(0, len(ordered), SMS_NUMBERS_PER_CALL):
            try:
                done |= await self._send_sms_call(app_id,
                                                  ordered[start:start + SMS_NUMBERS_PER_CALL])
            except VendorError as exc:
                exc.completed = tuple(done[i] for i in sorted(done))
                raise
        return [done[i] for i in range(len(items))]

    async def get_sms_reports(self, msg_ids: list[str]) -> list[SmsReport]:
        """The reports the vendor has; ids it does not know are simply absent."""
        if not msg_ids:
            return []
        app_id = _need(self._sms_app_id, "sms_app_id")
        if any("," in msg_id for msg_id in msg_ids):
            raise ValueError("msgIds must not contain commas")
        reports: list[SmsReport] = []
        for start in range(0, len(msg_ids), REPORT_IDS_PER_CALL):
            chunk = ",".join(msg_ids[start:start + REPORT_IDS_PER_CALL])
            try:
                answer = await self._call("GET", "sms/getReport",
                                          query={"appId": app_id, "msgIds": chunk})
                rows = answer.get("array") or []
                if not isinstance(rows, list):
                    raise OutcomeUnknown(vendor=VENDOR, reason="getReport array is not a list")
            except VendorError as exc:
                exc.completed = tuple(reports)
                raise
            reports += [_report(row) for row in rows
                        if isinstance(row, dict) and _text(row.get("msgId"))]
        return reports

    async def _send_sms_call(self, app_id: str,
                             batch: list[tuple[int, SmsItem]]) -> dict[int, SmsSubmitted]:
        array = []
        for (content, sender_id, has_order), run in itertools.groupby(
                batch, key=lambda pair: _sms_key(pair[1])):
            run_items = [item for _, item in run]
            entry = {"numbers": ",".join(item.number for item in run_items), "content": content}
            if sender_id is not None:
                entry["senderId"] = sender_id
            if has_order:  # aligned with numbers, one for one, as the vendor requires
                entry["orderId"] = ",".join(item.order_id or "" for item in run_items)
            array.append(entry)
        answer = await self._exchange("POST", "sms/sendSms/batch",
                                      body={"appId": app_id, "array": array})
        rows = [(True, row) for row in _dicts(answer.get("array"))]
        rows += [(False, row) for row in _dicts(answer.get("failArray"))]
        status, reason = _status(answer), _text(answer.get("reason"))
        # A non-zero status can still carry per-number results (vendor-formats §3a): only
        # an answer without any is a rejection of the whole call.
        if not rows:
            if status is not None and status != "0":
                raise vendor_error(VENDOR, status, reason)
            raise OutcomeUnknown(vendor=VENDOR, reason="SMS answer without per-number results")
        refused = reason if status != "0" and reason else None
        return _match_sms(batch, rows, refused=refused)

    async def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                    query: dict[str, str] | None = None,
                    codes: dict[str, str] = ITNIO_CODES) -> dict[str, Any]:
        answer = await self._exchange(method, path, body=body, query=query)
        status = _status(answer)
        if status is None:
            raise OutcomeUnknown(vendor=VENDOR, reason=f"{path} answered without a status")
        if status != "0":
            error = vendor_error(VENDOR, status, _text(answer.get("reason")), codes=codes)
            logger.info("itnio refused %s: %s", path, status,
                        extra={"action": "vendor_rejected", "vendor": VENDOR, "endpoint": path,
                               "code": status})
            raise error
        return answer

    async def _exchange(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                        query: dict[str, str] | None = None) -> dict[str, Any]:
        """Send one signed request; the JSON object that came back, or a VendorError."""
        url = f"{self._base_url}/{path}"
        if query:
            url += "?" + urlencode(query, safe=",")  # the vendor documents msgIds=a,b as is
        try:
            request = (json_request(self._http, method, url, headers=self._headers(), body=body,
                                    vendor=VENDOR)
                       if body is not None else
                       self._http.build_request(method, url, headers=self._headers(),
                                                extensions=tagged(VENDOR)))
            response = await send(self._http, request)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            error = transport_error(exc, vendor=VENDOR)
            logger.warning("itnio %s failed: %s", path, type(exc).__name__,
                           extra={"action": "vendor_call_failed", "vendor": VENDOR,
                                  "endpoint": path, "error": type(error).__name__})
            raise error from exc
        answer = _loads(response.content)
        if not response.is_success:
            code = _status(answer) if isinstance(answer, dict) else None
            reason = _text(answer.get("reason")) if isinstance(answer, dict) else None
            logger.warning("itnio %s answered HTTP %s", path, response.status_code,
                           extra={"action": "vendor_http_error", "vendor": VENDOR,
                                  "endpoint": path, "http_status": response.status_code})
            raise status_error(response.status_code, vendor=VENDOR, code=code,
                               reason=reason or f"HTTP {response.status_code}")
        if not isinstance(answer, dict):
            raise OutcomeUnknown(vendor=VENDOR, reason=f"{path} answer is not a JSON object",
                                 http_status=response.status_code)
        return answer

    def _headers(self) -> dict[str, str]:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return an aware datetime")
        timestamp = str(int(now.timestamp()))
        return {"Content-Type": "application/json;charset=UTF-8", "Api-Key": self._api_key,
                "Timestamp": timestamp, "Sign": sign(self._api_key, self._api_secret, timestamp)}


def _need(app_id: str | None, name: str) -> str:
    if not app_id:
        raise RuntimeError(f"ItnioClient was built without {name}")
    return app_id


def _loads(raw: bytes) -> Any:
    """JSON, or None. Repairs the flaw in the vendor's own template/query answer (seed 003):
    a `"` left unescaped inside a string value."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    for _ in range(_REPAIRS):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Expecting ',' delimiter":
                return None
            # The string closed early at the last quote before the unexpected character.
            at = exc.pos - 1
            while at > 0 and text[at].isspace():
                at -= 1
            if text[at] != '"' or text[at - 1] == "\\":
                return None
            text = text[:at] + "\\" + text[at:]
        except RecursionError:
            return None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def _status(answer: Any) -> str | None:
    return _text(answer.get("status")) if isinstance(answer, dict) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
        if seconds > 1e12:  # milliseconds
            seconds /= 1000
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _accepted(answer: dict[str, Any]) -> WhatsAppAccepted:
    data = answer.get("data")
    message_id = _text(data.get("messageId")) if isinstance(data, dict) else None
    if not isinstance(data, dict) or message_id is None:
        # Status 0 means it was taken, but without the id no status push can be matched.
        raise OutcomeUnknown(vendor=VENDOR, reason="accepted without data.messageId")
    # seed 000's field table spells it `imestamp`; its example says `timestamp`
    return WhatsAppAccepted(message_id, _epoch(data.get("timestamp", data.get("imestamp"))))


def _template(entry: dict[str, Any], lan: dict[str, Any]) -> RemoteTemplate:
    language = lan.get("language")
    code = _text(language.get("code")) if isinstance(language, dict) else _text(language)
    category = _text(entry.get("templateCategory"))
    return RemoteTemplate(
        template_id=_text(entry.get("templateId")),
        name=_text(entry.get("templateName")) or "",
        language=code or _text(lan.get("languageCode")) or "",
        status=_text(lan.get("status")) or "UNKNOWN",
        category=_CATEGORIES.get(category, category) if category else None,
        components={key: lan[key] for key in _COMPONENTS if key in lan},
        reason=_text(lan.get("reason")),
    )


def _sms_key(item: SmsItem) -> tuple[str, str | None, bool]:
    # Whether the items carry order ids is part of the key: the vendor wants them all or none.
    return (item.content, item.sender_id, bool(item.order_id))


def _take(queue: list[int] | None, taken: dict[int, SmsSubmitted]) -> int | None:
    for i in queue or ():
        if i not in taken:
            return i
    return None


def _match_sms(batch: list[tuple[int, SmsItem]], rows: list[tuple[bool, dict[str, Any]]], *,
               refused: str | None) -> dict[int, SmsSubmitted]:
    """The answer's rows by item; `refused` is the call's own reason when its status says no."""
    by_order: dict[str, list[int]] = {}
    by_number: dict[str, list[int]] = {}
    for i, item in batch:
        if item.order_id:
            by_order.setdefault(item.order_id, []).append(i)
        by_number.setdefault(item.number, []).append(i)
    items = dict(batch)
    out: dict[int, SmsSubmitted] = {}
    for accepted, row in rows:
        order_id, number = _text(row.get("orderId")), _text(row.get("number"))
        found = _take(by_order.get(order_id or ""), out)
        if found is None:
            found = _take(by_number.get(number or ""), out)
        if found is None:
            continue  # a number we did not send in this call
        reason = None if accepted else _text(row.get("reason")) or refused or "refused"
        out[found] = SmsSubmitted(items[found].number, items[found].order_id,
                                  _text(row.get("msgId")), accepted, reason)
    for i, item in batch:
        if i not in out:
            out[i] = SmsSubmitted(item.number, item.order_id, None, False,
                                  refused or "no result for this number in the answer")
    return out


def _report(row: dict[str, Any]) -> SmsReport:
    # Anything but the three documented values is not final yet: keep polling.
    status = _REPORT_STATUS.get(_text(row.get("status")) or "", "pending")
    received_at = None
    received = _text(row.get("receiveTime"))
    if received:
        try:
            parsed = datetime.fromisoformat(received)
            received_at = parsed if parsed.tzinfo is not None else None  # no guessing the zone
        except ValueError:
            pass
    return SmsReport(_text(row.get("msgId")) or "", _text(row.get("number")), status, received_at)
