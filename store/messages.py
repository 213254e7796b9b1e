"""Messages seen in conversations, outbound messages and the status events about them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, or_, select

from store.models import ChatMessage, OutboundMessage, StatusEvent

STATUS_COLUMNS = {
    "accepted": "accepted_at", "sent": "sent_at", "delivered": "delivered_at",
    "read": "read_at", "failed": "failed_at", "rejected": "rejected_at", "expired": "expired_at",
}


ADD_CHAT_MESSAGE = insert(ChatMessage.__table__)  # type: ignore[attr-defined]


def add_chat_message(session: Session, **fields: Any) -> None:
    session.execute(ADD_CHAT_MESSAGE, fields)  # Core: no ORM flush on the hot path


def add_status_event(session: Session, **fields: Any) -> StatusEvent:
    row = StatusEvent(**fields)
    session.add(row)
    session.flush()
    return row


def find_outbound(session: Session, *, channel: str, vendor_message_id: str | None,
                  client_ref: str | None, for_update: bool = True) -> OutboundMessage | None:
    """The outbound message a vendor report is about, by the vendor's id or our own ref."""
    matches = []
    if vendor_message_id:
        matches.append(col(OutboundMessage.vendor_message_id) == vendor_message_id)
    if client_ref:
        matches.append(col(OutboundMessage.client_ref) == client_ref)
    if not matches:
        return None
    # An SMS report can be about a WhatsApp request that fell back to SMS.
    on_channel = (or_(OutboundMessage.channel == "sms", OutboundMessage.route == "sms")
                  if channel == "sms" else OutboundMessage.channel == channel)
    stmt = select(OutboundMessage).where(on_channel, or_(*matches))
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def delivery_channel(message: OutboundMessage) -> str:
    """The channel the vendor reports on: a WhatsApp request sent by SMS is reported as SMS."""
    return "sms" if message.route == "sms" else message.channel


def stamped_statuses(message: OutboundMessage) -> frozenset[str]:
    return frozenset(s for s, column in STATUS_COLUMNS.items() if getattr(message, column))


def set_status(message: OutboundMessage, *, status: str, stamps: dict[str, datetime],
               flagged: bool) -> None:
    for name, at in stamps.items():
        column = STATUS_COLUMNS.get(name)
        if column and getattr(message, column) is None:
            setattr(message, column, at)
    if status != message.status:
        message.status = status
        message.status_at = stamps.get(status, message.status_at)
    message.flagged = message.flagged or flagged


def events_for(session: Session, message_id: str) -> list[StatusEvent]:
    stmt = select(StatusEvent).where(StatusEvent.message_id == message_id)
    return list(session.exec(stmt.order_by(col(StatusEvent.occurred_at), col(StatusEvent.id))).all())
