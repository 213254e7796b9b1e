"""ITNIO pushes (vendor-formats.md §2, §3) -> events. Pure."""

from __future__ import annotations

import re
from typing import Any

from receiver import _lenient as L
from receiver.events import ChatSeen, Event, Owner, StatusReported, TemplateChanged, Unhandled

_FAILURE = re.compile(r"^\s*(-?\d+)\s*[:\uff1a\-]?\s*(.*)$", re.S)
_PHONE_SPACING = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"[0-9]+")
WA_STATUSES = {"sent", "delivered", "read", "failed", "deleted"}


def parse_whatsapp(body: bytes) -> list[Event]:
    items = L.objects(L.load_json(body), what="an ITNIO WhatsApp push")
    return [_whatsapp_event(item) for item in items]


def parse_sms(body: bytes) -> list[Event]:
    items = L.objects(L.load_json(body), what="an ITNIO SMS push")
    return [_sms_event(item) for item in items]


def _whatsapp_event(item: dict[str, Any]) -> Event:
    event_type = L.text(item.get("eventType")) or ""
    owner = Owner("itnio_whatsapp", L.text(item.get("appId")))
    if event_type == "up-message-event":
        return _uplink(item, owner)
    if event_type == "message-status-event":
        return _wa_status(item, owner)
    if event_type == "template-status-event":
        return _template_status(item, owner)
    return Unhandled(kind=event_type or "unknown", owner=owner)


def phone(value: str | None) -> str | None:
    """'+91 856-321-432' -> '91856321432': digits only, as the windows API and the outbox key
    phones. A value that isn't a phone number once spaced out is kept as sent."""
    if value is None:
        return None
    digits = _PHONE_SPACING.sub("", value)
    digits = digits[1:] if digits.startswith("+") else digits
    return digits if _DIGITS.fullmatch(digits) else value


def _required_phone(item: dict[str, Any], *path: str, what: str) -> str:
    return phone(L.required(item, *path, what=what)) or ""


def message_text(message: dict[str, Any]) -> str | None:
    """The words of an inbound message, whatever its type carries them in."""
    kind = L.text(message.get("type")) or ""
    part = L.mapping(message.get(kind))
    interactive = L.mapping(message.get("interactive"))
    for candidate in (
        part.get("body"),
        part.get("caption"),
        part.get("text"),
        L.mapping(interactive.get("button_reply")).get("title"),
        L.mapping(interactive.get("list_reply")).get("title"),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return None


def _uplink(item: dict[str, Any], owner: Owner) -> ChatSeen:
    what = "An up-message-event"
    message_id = L.required(item, "messageId", what=what)
    business = _required_phone(item, "businessPhone", what=what)
    sender = L.mapping(item.get("from"))
    customer = _required_phone(item, "from", "phone", what=what)
    message = L.mapping(item.get("message"))
    return ChatSeen(
        key=f"whatsapp:in:{business}:{message_id}",
        owner=owner,
        channel="whatsapp",
        direction="in",
        account=business,
        customer=customer,
        vendor_message_id=message_id,
        msg_type=L.text(message.get("type")) or "unknown",
        text=message_text(message),
        content=message,
        sent_at=L.epoch(item.get("timestamp")),
        customer_name=L.text(sender.get("name")),
    )


def split_failure(failure: Any) -> tuple[str | None, str | None]:
    """'131047: Re-engagement message' -> ('131047', 'Re-engagement message')."""
    raw = L.text(failure)
    if raw is None:
        return None, None
    match = _FAILURE.match(raw)
    if match:
        return match.group(1), match.group(2).strip() or None
    return None, raw


def _wa_status(item: dict[str, Any], owner: Owner) -> StatusReported | Unhandled:
    what = "A message-status-event"
    message_id = L.required(item, "messageId", what=what)
    status = (L.required(item, "status", what=what)).lower()
    if status not in WA_STATUSES:
        # A status the vendor never documented: kept in the archive, applied to nothing
        # (a replay picks it up once the parser knows it).
        return Unhandled(kind="message-status-event", owner=owner)
    code, reason = split_failure(item.get("failure")) if status == "failed" else (None, None)
    return StatusReported(
        key=f"whatsapp:status:{message_id}:{status}",
        owner=owner,
        channel="whatsapp",
        status=status,
        occurred_at=L.epoch(item.get("timestamp")),
        vendor_message_id=message_id,
        failure_code=code,
        failure_reason=reason,
        billable=L.boolean(item.get("billable")),
        conversation_type=L.text(item.get("conversationType")),
        detail={
            "from": phone(L.text(item.get("from")) or L.text(item.get("form"))),
            "recipient": phone(L.text(item.get("recipient"))),
            "conversation_id": L.text(item.get("conversationId")),
            "conversation_expires_at": L.text(item.get("expiresAt")),
        },
    )


def _template_status(item: dict[str, Any], owner: Owner) -> TemplateChanged:
    what = "A template-status-event"
    name = L.required(item, "templateName", what=what)
    status = L.required(item, "status", what=what).upper()
    language = L.text(item.get("languageCode")) or ""
    template_id = L.text(item.get("templateId"))
    stamp = L.text(item.get("timestamp")) or ""
    return TemplateChanged(
        key=f"template:{template_id or name}:{language}:{status}:{stamp}",
        owner=owner,
        vendor_template_id=template_id,
        name=name,
        language=language,
        status=status,
        reason=L.text(item.get("reason")),
        occurred_at=L.epoch(item.get("timestamp")),
    )


def _sms_event(item: dict[str, Any]) -> Event:
    owner = Owner("itnio_sms", L.text(item.get("appId")))
    msgid = L.text(item.get("msgid")) or L.text(item.get("msgId"))
    if "content" in item or "reply_time" in item:
        return _sms_inbound(item, owner, msgid)
    if msgid is not None and "status" in item:
        return _sms_report(item, owner, msgid)
    return Unhandled(kind="sms-unknown", owner=owner)


def _sms_report(item: dict[str, Any], owner: Owner, msgid: str) -> StatusReported:
    # A null status is no verdict: not to be read as a failure.
    raw_status = L.required(item, "status", what="An SMS delivery report")
    delivered = raw_status == "0"
    status = "delivered" if delivered else "failed"
    reason = L.text(item.get("reason"))
    return StatusReported(
        key=f"sms:status:{msgid}:{raw_status}",
        owner=owner,
        channel="sms",
        status=status,
        occurred_at=L.epoch(item.get("timestamp")),
        vendor_message_id=msgid,
        client_ref=L.text(item.get("orderId")),
        failure_code=None if delivered else raw_status,
        failure_reason=None if delivered else reason,
        cost=L.mapping(item.get("pricedetail")) or None,
        detail={
            "mobile": phone(L.text(item.get("mobile"))),
            "mcc": L.text(item.get("mcc")),
            "mnc": L.text(item.get("mnc")) or L.text(item.get("mcn")),
        },
    )


def _sms_inbound(item: dict[str, Any], owner: Owner, msgid: str | None) -> ChatSeen:
    what = "An inbound SMS"
    if msgid is None:
        L.required(item, "msgid", what=what)
    mobile = _required_phone(item, "mobile", what=what)
    content = L.text(item.get("content"))
    return ChatSeen(
        key=f"sms:in:{msgid}",
        owner=owner,
        channel="sms",
        direction="in",
        account=phone(L.text(item.get("sendid"))) or "",
        customer=mobile,
        vendor_message_id=str(msgid),
        msg_type="text",
        text=content,
        content={k: v for k, v in item.items() if k != "pricedetail"},
        sent_at=L.iso(item.get("reply_time")),
    )
