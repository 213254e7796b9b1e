"""ITNIO TECH's side of the vendor simulator: WhatsApp custom and template sends, template
add and query, SMS batch send and getReport, and the pushes that follow (vendor-formats §0-§3).

Codes are the ones the seeds give for each endpoint; where the docs have none, "-22"
(Parameter exception, §0) stands in. Answers carry `status` as a string, as the vendor's do.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ITNIO_WA_HOOK = "/webhooks/itnio/whatsapp"
ITNIO_SMS_HOOK = "/webhooks/itnio/sms"
SKEW_SECONDS = 300
ITNIO_LOCAL = timezone(timedelta(hours=8))  # ITNIO answers and writes local times in +08:00
CATEGORIES = {0: "AUTHENTICATION", 1: "MARKETING", 2: "UTILITY"}
VAR = re.compile(r"\{\{\s*(?:#|\d+)\s*\}\}")
LINK = re.compile(r"^https?://\S+$")
DIGITS = re.compile(r"^\d+$")
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
LANGUAGES = {"en": ("英语", "English"), "en_US": ("英语(美国)", "English (US)"),
             "en_GB": ("英语(英国)", "English (UK)"), "zh_CN": ("中文(CHN)", "Chinese (CHN)"),
             "zh_TW": ("中文(台湾)", "Chinese (TAI)"), "zh_HK": ("中文(香港)", "Chinese (HKG)")}
# Meta's titles for the codes a test is likely to ask for (set_outcome("failed:131047")).
FAILURE_TITLES = {"131047": "Re-engagement message", "131050": "User has stopped receiving "
                  "marketing messages", "131026": "Message undeliverable",
                  "131049": "Message not delivered to maintain healthy ecosystem engagement",
                  "131051": "Unsupported message type", "131000": "Something went wrong"}
MEDIA_CODES = {"image": ("-116", "-117"), "audio": ("-118", "-119"), "video": ("-120", "-121"),
               "sticker": ("-122", "-123"), "document": ("-124", "-125")}
TEXT_CODES = {"-1": "Authentication error", "-4": "timestamp expires",
              "-16": "timestamp expires", "-22": "Parameter exception",
              "-32": "API Key has no permission for the application",
              "-10": "application does not exist", "-7": "parameter validation exception"}
# Per-endpoint codes for (stale timestamp, wrong appId, unreadable body): seeds 001/003
# give -4 / -10 / -7 for the template pages; the global table (§0) -16 / -32 / -22.
GLOBAL_CODES = ("-16", "-32", "-22")
TEMPLATE_CODES = ("-4", "-10", "-7")


class _Reject(Exception):
    def __init__(self, status: str, reason: str, **extra: Any) -> None:
        self.status, self.reason, self.extra = status, reason, extra


def _need(ok: Any, status: str, reason: str) -> None:
    if not ok:
        raise _Reject(status, reason)


def _same(given: str, expected: str) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
    return hmac.compare_digest(given.encode(errors="replace"), expected.encode())


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _phone(value: Any, long: str, short: str, digits: str, what: str) -> str:
    phone = str(value).strip() if isinstance(value, str | int) else ""
    _need(DIGITS.match(phone), digits, f"{what} must be digits")
    _need(len(phone) <= 14, long, f"{what} longer than 14 digits")
    _need(len(phone) >= 7, short, f"{what} shorter than 7 digits")
    return phone


class ItnioMixin:
    api_key: str
    api_secret: str
    wa_app_id: str
    sms_app_id: str
    enforce_window: bool
    clock: Callable[[], datetime]
    _sent: dict[str, list[dict[str, Any]]]
    _now_s: Callable[[], int]
    _digits_id: Callable[[], str]
    _queue: Callable[[str, Any], None]
    _outcome: Callable[[str], str]

    def _init_itnio(self) -> None:
        # Off by default: tests that open the window straight at the receiver would see 131047.
        self.enforce_window = False
        self._templates: dict[str, dict[str, Any]] = {}
        self._sms: dict[str, dict[str, Any]] = {}
        self._wa_inbound: dict[tuple[str, str], datetime] = {}

    def _itnio_routes(self) -> list[tuple[str, str, str, Callable[[Request, Any], Response]]]:
        return [
            ("itnio", "POST", "/wa/custom/sendMsg", self._wa_custom),
            ("itnio", "POST", "/wa/template/sendMsg", self._wa_template_send),
            ("itnio", "POST", "/wa/template/add", self._wa_template_add),
            ("itnio", "POST", "/wa/template/query", self._wa_template_query),
            ("itnio", "POST", "/sms/sendSms/batch", self._sms_batch),
            ("itnio", "GET", "/sms/getReport", self._sms_report),
        ]

    @staticmethod
    def _itnio_answer(status: str, reason: str, **extra: Any) -> Response:
        return JSONResponse({"status": status, "reason": reason, **extra},
                            media_type="application/json;charset=UTF-8")

    def _guarded(self, request: Request, body: Any, app_id: str, handle: Callable[[Any], Any],
                 codes: tuple[str, str, str] = GLOBAL_CODES) -> Response:
        """Sign, time and appId checks, then the handler; any _Reject becomes its answer."""
        stale, wrong_app, unreadable = codes
        try:
            headers = request.headers
            stamp = headers.get("timestamp", "")
            expected = hashlib.md5((self.api_key + self.api_secret + stamp).encode()).hexdigest()
            _need(_same(headers.get("api-key", ""), self.api_key)
                  and _same(headers.get("sign", "").lower(), expected),
                  "-1", "Authentication error")
            _need(stamp.isascii() and stamp.isdigit(), stale, "timestamp expires")
            seconds = int(stamp) / 1000 if len(stamp) > 11 else int(stamp)  # seed 001 sends ms
            _need(abs(seconds - self._now_s()) <= SKEW_SECONDS, stale, "timestamp expires")
            _need(isinstance(body, dict), unreadable, TEXT_CODES[unreadable])
            _need(str(body.get("appId", "")) == app_id, wrong_app, TEXT_CODES[wrong_app])
            return self._itnio_answer("0", "success", **handle(body))
        except _Reject as reject:
            return self._itnio_answer(reject.status, reject.reason, **reject.extra)

    # ---- WhatsApp sends -------------------------------------------------------------------

    def _wa_common(self, body: dict[str, Any]) -> tuple[str, str]:
        _need(str(body.get("channelType")) == "0", "-112", "channelType can only be 0")
        business = _phone(body.get("businessPhone"), "-93", "-94", "-95", "businessPhone")
        recipient = _phone(body.get("recipient"), "-70", "-71", "-72", "recipient")
        return business, recipient

    def _wa_custom(self, request: Request, body: Any) -> Response:
        return self._guarded(request, body, self.wa_app_id, self._wa_custom_ok)

    def _wa_custom_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        business, recipient = self._wa_common(body)
        kind = body.get("type")
        text = _check_custom(kind, body)
        outcome = self._outcome(recipient)
        last_in = self._wa_inbound.get((business, recipient))
        if self.enforce_window and (last_in is None
                                    or self.clock() >= last_in + timedelta(hours=24)):
            outcome = "failed:131047"
        message = {k: v for k, v in body.items() if k not in ("appId", "channelType")}
        return self._wa_accept("custom", business, recipient, outcome, "service", text=text,
                               type=kind, message=message,
                               reply_to=_obj(body.get("context")).get("refMessageId"))

    def _wa_template_send(self, request: Request, body: Any) -> Response:
        return self._guarded(request, body, self.wa_app_id, self._wa_template_send_ok)

    def _wa_template_send_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        business, recipient = self._wa_common(body)
        template = _obj(body.get("template"))
        name, language = _text(template.get("name")), _text(_obj(template.get("language"))
                                                             .get("code"))
        found = self._templates.get(name, {})
        entry = found.get("langs", {}).get(language)
        _need(entry and entry["status"] == "APPROVED", "-44",
              "template send failed: template language not found")
        components = template.get("components") or []
        _need(isinstance(components, list), "-134", "components must be a list")
        values = _template_values(components)
        for part in ("header", "body"):
            wanted = len(VAR.findall(entry.get(f"{part}_text", "")))
            _need(len(values.get(part, [])) == wanted, "-134",
                  f"{part} has {len(values.get(part, []))} parameters, the template {wanted}")
        rendered = _render(entry.get("body_text", ""), values.get("body", []))
        return self._wa_accept("template", business, recipient, self._outcome(recipient),
                               CATEGORIES[found["category"]].lower(), text=rendered,
                               type="template", message={"template": template},
                               template={"name": name, "language": language})

    def _wa_accept(self, route: str, business: str, recipient: str, outcome: str,
                   conversation: str, **record: Any) -> dict[str, Any]:
        message_id, now = self._digits_id(), self._now_s()
        self._sent["whatsapp"].append({
            "route": route, "business_phone": business, "recipient": recipient,
            "vendor_message_id": message_id, "message_id": message_id, "outcome": outcome,
            "at": self.clock(), **record})
        for push in _wa_status_pushes(self.wa_app_id, message_id, business, recipient, outcome,
                                      conversation, now):
            self._queue(ITNIO_WA_HOOK, push)
        return {"data": {"channelType": 0, "messageId": message_id, "timestamp": now}}

    # ---- templates ------------------------------------------------------------------------

    def add_approved_template(self, name: str, language: str, body_text: str,
                              category: str | int = "UTILITY") -> ItnioMixin:
        """Seed a template as if it had been added and approved long ago (no push)."""
        code = category if isinstance(category, int) else {
            v: k for k, v in CATEGORIES.items()}[category.upper()]
        self._store_template(name, language, code, {"body_text": body_text},
                             status="APPROVED")
        return self

    def approve_template(self, name: str, language: str) -> None:
        self.set_template_status(name, language, "APPROVED")

    def set_template_status(self, name: str, language: str, status: str,
                            reason: str = "NONE") -> None:
        """Change a template's review status and queue the template-status-event push."""
        template = self._templates[name]
        entry = template["langs"][language]
        entry["status"], entry["reason"] = status, status if reason == "NONE" else reason
        self._queue(ITNIO_WA_HOOK, {
            "appId": self.wa_app_id, "channelType": 0, "templateId": template["id"],
            "templateName": name, "languageCode": language, "status": status,
            "reason": reason, "timestamp": self._now_s(), "eventType": "template-status-event"})

    def _store_template(self, name: str, language: str, category: int,
                        parts: dict[str, Any], *, status: str) -> dict[str, Any]:
        template = self._templates.setdefault(
            name, {"id": uuid.uuid4().hex, "category": category, "langs": {}})
        template["langs"][language] = {**parts, "status": status, "reason": status}
        return template

    def _wa_template_add(self, request: Request, body: Any) -> Response:
        return self._guarded(request, body, self.wa_app_id, self._wa_template_add_ok,
                             TEMPLATE_CODES)

    def _wa_template_add_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        _need(str(body.get("channelType")) == "0", "-99", "channel type error")
        name, language = _text(body.get("templateName")), _text(body.get("language"))
        _need(TEMPLATE_NAME.match(name), "-33", "template name format is wrong")
        _need(str(body.get("type")) in ("0", "1", "2"), "-76", "enter a correct type")
        category = int(body["type"])
        _need(LANGUAGE_CODE.match(language), "-74", "language code format error")
        existing = self._templates.get(name)
        _need(not existing or existing["category"] == category, "-75",
              "template type does not match the existing type")
        _need(not existing or language not in existing["langs"], "-32",
              "language already exists under this template")
        parts = _template_parts(body.get("components"), category)
        template = self._store_template(name, language, category, parts, status="PENDING")
        return {"data": {"templateId": template["id"], "templateName": name, "type": category,
                         "languageCode": language, "status": "PENDING"}}

    def _wa_template_query(self, request: Request, body: Any) -> Response:
        return self._guarded(request, body, self.wa_app_id, self._wa_template_query_ok,
                             TEMPLATE_CODES)

    def _wa_template_query_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        want_id, want_lang = _text(body.get("templateId")), _text(body.get("languageCode"))
        data = []
        for name, template in self._templates.items():
            if want_id and template["id"] != want_id:
                continue
            langs = [_query_lang(code, entry) for code, entry in template["langs"].items()
                     if not want_lang or code == want_lang]
            if langs:
                data.append({"appId": self.wa_app_id, "templateId": template["id"],
                             "templateName": name, "templateCategory": template["category"],
                             "templateLanList": langs})
        return {"data": data}

    # ---- SMS ------------------------------------------------------------------------------

    def _sms_batch(self, request: Request, body: Any) -> Response:
        return self._guarded(request, body, self.sms_app_id, self._sms_batch_ok)

    def _sms_batch_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("array")
        _need(isinstance(items, list) and items, "-22", "array is empty")
        jobs = []
        for item in items:
            item = _obj(item)
            numbers = [n.strip() for n in str(item.get("numbers") or "").split(",") if n.strip()]
            content = item.get("content") if isinstance(item.get("content"), str) else ""
            _need(numbers, "-8", "Phone number is empty")
            _need(content, "-4", "SMS content is empty")
            _need(len(content) <= 1024, "-5", "SMS content too long")
            _need(len(str(item.get("senderId") or "")) <= 32, "-22", "senderId too long")
            orders = [o.strip() for o in str(item["orderId"]).split(",")] \
                if item.get("orderId") not in (None, "") else None
            _need(orders is None or len(orders) == len(numbers), "-22",
                  "orderId count does not match numbers")
            jobs += [(n, content, str(item.get("senderId") or ""), orders[i] if orders else None)
                     for i, n in enumerate(numbers)]
        _need(len(jobs) <= 1000, "-7", "Phone number exceeds limit")
        accepted, rejected = [], []
        for number, content, sender_id, order_id in jobs:
            msg_id = self._digits_id()
            if DIGITS.match(number) and 7 <= len(number) <= 15:
                accepted.append({"msgId": msg_id, "number": number}
                                | ({} if order_id is None else {"orderId": order_id}))
                self._sms_accept(msg_id, number, content, sender_id, order_id)
            else:
                rejected.append({"msgId": msg_id, "number": number,
                                 "reason": "Abnormal phone number"})
                self._sms[msg_id] = {"number": number, "state": "1", "at": self.clock()}
        results = {"success": str(len(accepted)), "fail": str(len(rejected)), "array": accepted,
                   **({"failArray": rejected} if rejected else {})}
        # A batch with no number accepted still carries its per-number results (§3a's -9).
        if not accepted:
            raise _Reject("-9", "Abnormal phone number", **results)
        return results

    def _sms_accept(self, msg_id: str, number: str, content: str, sender_id: str,
                    order_id: str | None) -> None:
        outcome = self._outcome(number)
        failed = outcome == "failed" or outcome.startswith("failed:")
        state = "1" if failed else "-1" if outcome == "pending" else "0"
        self._sms[msg_id] = {"number": number, "state": state, "at": self.clock()}
        self._sent["sms"].append({
            "recipient": number, "vendor_message_id": msg_id, "msg_id": msg_id,
            "order_id": order_id, "sender_id": sender_id, "text": content, "content": content,
            "outcome": outcome, "at": self.clock()})
        if outcome in ("silent", "pending"):
            return
        reason = (outcome.partition(":")[2] or "UNDELIV") if failed else "0"
        code = int(reason) if failed and re.fullmatch(r"-?\d+", reason) and reason != "0" else 1
        segments = _sms_segments(content)
        self._queue(ITNIO_SMS_HOOK, {
            "appId": self.sms_app_id, "msgid": msg_id, "mobile": number,
            "status": code if failed else 0, "reason": reason,
            "timestamp": int(self.clock().timestamp() * 1000) + 1000, "orderId": order_id or "",
            "pricedetail": {"pay": f"{0.01 * segments:.2f}", "currency": "USD",
                            "chargeCnt": segments, "price": "0.01"}})

    def _sms_report(self, request: Request, body: Any) -> Response:
        return self._guarded(request, body, self.sms_app_id, self._sms_report_ok)

    def _sms_report_ok(self, query: dict[str, Any]) -> dict[str, Any]:
        ids = [i.strip() for i in str(query.get("msgIds") or "").split(",") if i.strip()]
        _need(ids and len(ids) <= 200, "-14", "Field empty or query ID abnormal")
        rows, counts = [], {"0": 0, "1": 0, "-1": 0}
        for msg_id in ids:
            if (sms := self._sms.get(msg_id)) is None:
                continue
            counts[sms["state"]] += 1
            received = "" if sms["state"] == "-1" else (
                (sms["at"] + timedelta(seconds=1)).astimezone(ITNIO_LOCAL).isoformat("T",
                                                                                    "seconds"))
            rows.append({"msgId": msg_id, "number": sms["number"], "receiveTime": received,
                         "status": sms["state"]})
        return {"success": str(counts["0"]), "fail": str(counts["1"]),
                "sending": str(counts["-1"]), "nofound": str(len(ids) - len(rows)),
                "array": rows}

    # ---- customers writing in -------------------------------------------------------------

    def customer_writes_whatsapp(self, business_phone: str, customer_phone: str, text: str, *,
                                 at: datetime | None = None, name: str = "Customer") -> str:
        """Queue an up-message-event push (§2a); returns its messageId (for reply_to)."""
        when = at or self.clock()
        message_id = "wamid." + uuid.uuid4().hex.upper()
        key = (business_phone, customer_phone)
        self._wa_inbound[key] = max(when, self._wa_inbound.get(key, when))
        self._queue(ITNIO_WA_HOOK, {
            "appId": self.wa_app_id, "channelType": 0, "messageId": message_id,
            "timestamp": int(when.timestamp()), "eventType": "up-message-event",
            "businessPhone": business_phone, "from": {"phone": customer_phone, "name": name},
            "message": {"type": "text", "text": {"body": text}}})
        return message_id

    def customer_writes_sms(self, business_number: str, customer_phone: str, text: str, *,
                            at: datetime | None = None) -> str:
        """Queue an SMS MO push (§3c; `reply_time` in the vendor's +08:00); returns its msgid."""
        when = (at or self.clock()).astimezone(ITNIO_LOCAL)
        msg_id = self._digits_id()
        self._queue(ITNIO_SMS_HOOK, {
            "msgid": msg_id, "mobile": customer_phone,
            "reply_time": when.strftime("%Y-%m-%d %H:%M:%S"), "content": text,
            "sendid": business_number, "mcc": 515, "mcn": -1, "operator": "Simulated",
            "pricedetail": {"pay": "0.00", "currency": "USD", "chargeCnt": 1, "price": "0.00"}})
        return msg_id


def _wa_status_pushes(app_id: str, message_id: str, business: str, recipient: str,
                      outcome: str, conversation: str, now: int) -> list[dict[str, Any]]:
    base = {"appId": app_id, "channelType": 0, "messageId": message_id,
            "eventType": "message-status-event", "form": business, "recipient": recipient}
    if outcome in ("silent", "pending"):
        return []
    if outcome == "failed" or outcome.startswith("failed:"):
        detail = outcome.partition(":")[2] or "131000"
        failure = detail if ":" in detail or not detail.isdigit() else \
            f"{detail}: {FAILURE_TITLES.get(detail, 'Message failed to send')}"
        return [{**base, "billable": "false", "status": "failed", "failure": failure,
                 "timestamp": now + 1}]
    conv = {"conversationId": uuid.uuid5(uuid.NAMESPACE_OID, message_id).hex,
            "expiresAt": now + 86400, "conversationType": conversation}
    steps = ["sent", "delivered"] + (["read"] if outcome == "read" else [])
    return [{**base, "billable": "true", "status": step,
             **(conv if step != "read" else {"conversationType": conversation}),
             "timestamp": now + i + 1} for i, step in enumerate(steps)]


def _check_custom(kind: Any, body: dict[str, Any]) -> str:
    """Seed 000's per-type rules (loosely); the text worth recording for assertions."""
    part = body.get(kind) if isinstance(kind, str) else None
    if kind == "text":
        _need(isinstance(part, dict), "-114", "text cannot be empty")
        _need(_text(part.get("body")), "-115", "text body cannot be empty")
        _need(len(part["body"]) <= 4096, "-22", "text body longer than 4096 characters")
        return part["body"]
    if kind in MEDIA_CODES:
        empty, no_link = MEDIA_CODES[kind]
        _need(isinstance(part, dict), empty, f"{kind} cannot be empty")
        _need(_text(part.get("link")), no_link, f"{kind} link cannot be empty")
        _need(LINK.match(part["link"]), "-133", "link format error")
        _need(kind != "document" or _text(part.get("filename")), "-22", "filename required")
        return _text(part.get("caption"))
    if kind == "location":
        _need(isinstance(part, dict), "-127", "location cannot be empty")
        _need(_text(part.get("longitude")), "-128", "longitude cannot be empty")
        _need(_text(part.get("latitude")), "-129", "latitude cannot be empty")
        _need(_text(part.get("name")) and _text(part.get("address")), "-22",
              "location name and address are required")
        return _text(part.get("name"))
    if kind == "contacts":
        _need(isinstance(part, list) and part, "-22", "contacts cannot be empty")
        return ""
    if kind == "interactive":
        return _check_interactive(_obj(part))
    raise _Reject("-132", "unknown message type")


def _check_interactive(part: dict[str, Any]) -> str:
    kind, action = part.get("type"), _obj(part.get("action"))
    _need(kind in ("list", "button", "location_request_message", "carousel"), "-165",
          "interactive type must be list, button, location_request_message or carousel")
    body_text = _text(_obj(part.get("body")).get("text"))
    if kind == "carousel":
        _need("header" not in part and "footer" not in part, "-304",
              "carousel does not support header or footer")
        _need(body_text and len(body_text) <= 1024, "-330",
              "carousel body cannot be empty and at most 1024 characters")
        cards = action.get("cards")
        _need(isinstance(cards, list) and 2 <= len(cards) <= 10, "-305",
              "carousel must have 2-10 cards")
        _need([_obj(c).get("card_index") for c in cards] == list(range(len(cards))), "-306",
              "card_index must be 0-9, from 0, unique and consecutive")
        for card in map(_obj, cards):
            _check_card(card)
        return body_text
    _need(body_text, "-22", "interactive body text cannot be empty")
    if kind == "list":
        sections = action.get("sections")
        _need(isinstance(sections, list) and 1 <= len(sections) <= 10, "-22",
              "list needs 1-10 sections")
    elif kind == "button":
        buttons = action.get("buttons")
        _need(isinstance(buttons, list) and 1 <= len(buttons) <= 3, "-22",
              "reply buttons: 1-3")
    else:
        _need(action.get("name") == "send_location", "-22", "action.name must be send_location")
    return body_text


def _check_card(card: dict[str, Any]) -> None:
    _need(card.get("type") == "cta_url", "-307", 'card type must be "cta_url"')
    header = card.get("header")
    _need(isinstance(header, dict), "-308", "card header cannot be empty")
    _need(header.get("type") in ("image", "video"), "-309", "card header must be image or video")
    _need(_text(_obj(header.get(header["type"])).get("link")), "-310",
          "card header media link cannot be empty")
    text = _text(_obj(card.get("body")).get("text"))
    _need(text and len(text) <= 160, "-311", "card body text empty or over 160 characters")
    action = card.get("action")
    _need(isinstance(action, dict) and action, "-312", "card action cannot be empty")
    has_url, buttons = "name" in action or "parameters" in action, action.get("buttons")
    _need(not (has_url and buttons is not None), "-331",
          "card buttons are either one URL button or quick replies")
    if has_url:
        _need(action.get("name") == "cta_url", "-313", 'URL button name must be "cta_url"')
        params = action.get("parameters")
        _need(isinstance(params, dict) and params, "-314", "URL button parameters empty")
        label = _text(params.get("display_text"))
        _need(label and len(label) <= 20, "-315", "display_text empty or over 20 characters")
        _need(_text(params.get("url")), "-316", "URL button url cannot be empty")
        return
    _need(isinstance(buttons, list) and 1 <= len(buttons) <= 2, "-317",
          "a card has 1-2 quick reply buttons")
    for button in map(_obj, buttons):
        _need(button.get("type") == "quick_reply", "-318", 'button type must be "quick_reply"')
        reply = button.get("quick_reply")
        _need(isinstance(reply, dict), "-319", "quick_reply cannot be empty")
        _need(0 < len(_text(reply.get("id"))) <= 20, "-320", "quick_reply id empty or over 20")
        _need(0 < len(_text(reply.get("title"))) <= 20, "-321",
              "quick_reply title empty or over 20")


def _template_values(components: list[Any]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for component in map(_obj, components):
        kind = str(component.get("type", "")).lower()
        params = component.get("parameters") or []
        _need(isinstance(params, list), "-134", "parameters must be a list")
        for param in map(_obj, params):
            ptype = param.get("type")
            _need(isinstance(ptype, str) and ptype, "-134", "parameter type error")
            value = param.get(ptype)
            _need(value not in (None, "", {}), "-135", "parameter value cannot be empty")
            values.setdefault(kind, []).append(value if isinstance(value, str) else str(value))
    return values


def _render(text: str, values: list[str]) -> str:
    it = iter(values)
    return VAR.sub(lambda m: next(it, m.group(0)), text)


def _template_parts(components: Any, category: int) -> dict[str, Any]:
    """Seed 001's components (objects, or one-element lists as the PHP sample sends)."""
    _need(isinstance(components, dict) and components, "-89", "components cannot be empty")

    def part(key: str) -> dict[str, Any]:
        value = components.get(key)
        return _obj(value[0] if isinstance(value, list) and value else value)

    header, body, footer, button = part("header"), part("body"), part("footer"), part("button")
    parts: dict[str, Any] = {}
    if header:
        text = _text(header.get("text"))
        _need(str(header.get("format", "0")) in ("0", "1", "2", "3", "4"), "-101",
              "enter a correct format value")
        _need(len(text) <= 60, "-21", "header too long")
        _need(len(VAR.findall(text)) <= 1, "-91", "at most one header variable")
        parts |= {"header_text": text, "header_example": _obj(header.get("example"))
                  .get("header_text") or []}
    if category == 0:
        _need(body, "-103", "authentication templates need a body")
        _need(button.get("buttons"), "-109", "authentication templates need buttons")
        parts["body_text"] = "{{#}} is your verification code."
        minutes = footer.get("code_expiration_minutes")
        if minutes is not None:
            _need(str(minutes).isdigit() and int(minutes) <= 90, "-106",
                  "expiry must be 0-90 minutes")
            parts["footer"] = f"This code expires in {minutes} minutes."
    else:
        text = _text(body.get("text"))
        _need(text, "-84", "text content cannot be empty")
        _need(len(text) <= 1024, "-22", "body longer than 1024 characters")
        _need(not re.search(r"\{\{#\}\}\s*\{\{#\}\}", text), "-34",
              "two variables cannot be adjacent")
        examples = _obj(body.get("example")).get("body_text") or [[]]
        parts |= {"body_text": text, "body_example": examples[0] if examples else []}
        if footer:
            _need(len(_text(footer.get("text"))) <= 60, "-105", "footer longer than 60")
            parts["footer"] = _text(footer.get("text"))
    if button.get("buttons"):
        parts["buttons"] = button["buttons"]
    return parts


def _query_lang(code: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One templateLanList element in seed 003's shape."""
    name_cn, name_en = LANGUAGES.get(code, (code, code))
    lang: dict[str, Any] = {"language": {"nameCn": name_cn, "nameEn": name_en, "code": code}}
    if entry.get("header_text"):
        lang["header"] = {"type": 0, "text": entry["header_text"]}
        if entry.get("header_example"):
            lang["header"]["example"] = entry["header_example"]
    lang["body"] = {"type": 0, "text": entry.get("body_text", "")}
    if VAR.search(lang["body"]["text"]):
        wanted = len(VAR.findall(lang["body"]["text"]))
        lang["body"]["exampleParams"] = list(entry.get("body_example") or [""] * wanted)
    if entry.get("footer"):
        lang["footer"] = entry["footer"]
    if entry.get("buttons"):
        lang["buttons"] = entry["buttons"]
    return lang | {"status": entry["status"], "reason": entry["reason"]}


def _sms_segments(content: str) -> int:
    if all(ord(c) < 128 for c in content):
        return 1 if len(content) <= 160 else -(-len(content) // 153)
    return 1 if len(content) <= 70 else -(-len(content) // 67)
