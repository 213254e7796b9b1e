"""Messages seen in conversations, outbound messages and the status events about them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, or_, select

from store.models import OutboundMessage, StatusEvent

STATUS_COLUMNS = {
    "accepted": "accepted_at", "sent": "sent_at", "delivered": "delivered_at",
    "read": "read_at", "failed": "failed_at", "rejected": "rejected_at", "expired": "expired_at",
}


_STATUS_EVENTS = StatusEvent.__table__  # type: ignore[attr-defined]
ADD_STATUS_EVENT = insert(_STATUS_EVENTS).returning(_STATUS_EVENTS.c.id)
_OUTBOUND = OutboundMessage.__table__  # type: ignore[attr-defined]


def _flush_pending(session: Session) -> None:
    """Core queries skip autoflush: changes made through the ORM earlier in this
    transaction (an id just learnt) must reach the database before they are looked for."""
    if session.dirty or session.new:
        session.flush()


def add_status_event(session: Session, **fields: Any) -> StatusEvent:
    """Store a status event (Core, on the hot path); the row as an object, not in the session."""
    fields.setdefault("detail", {})
    event_id = session.connection().execute(ADD_STATUS_EVENT, fields).scalar_one()
    return StatusEvent(id=event_id, **fields)


def channels_reported_on(channel: str) -> tuple[str, ...]:
    """The channels an outbound message a report on `channel` may be kept under: an SMS
    report can be about a WhatsApp request that fell back to SMS (see `find_outbound`)."""
    return ("sms", "whatsapp") if channel == "sms" else (channel,)


def find_outbound(session: Session, *, channel: str, vendor_message_id: str | None,
                  client_ref: str | None, for_update: bool = True) -> OutboundMessage | None:
    """The outbound message a vendor report is about, by the vendor's id or our own ref.

    The id is looked up first with a plain query (most pushes name a message id we already
    matched, or none of ours at all), then the row is loaded and locked.
    """
    matches = []
    if vendor_message_id:
        matches.append(_OUTBOUND.c.vendor_message_id == vendor_message_id)
    if client_ref:
        matches.append(_OUTBOUND.c.client_ref == client_ref)
    if not matches:
        return None
    _flush_pending(session)
    # An SMS report can be about a WhatsApp request that fell back to SMS.
    on_channel = (or_(_OUTBOUND.c.channel == "sms", _OUTBOUND.c.route == "sms")
                  if channel == "sms" else _OUTBOUND.c.channel == channel)
    found = session.connection().execute(
        select(_OUTBOUND.c.id).where(on_channel, or_(*matches)).limit(1)).scalar()
    if found is None:
        return None
    return session.get(OutboundMessage, found, with_for_update=for_update or None)


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
    return list(session.exec(
        stmt.order_by(col(StatusEvent.occurred_at), col(StatusEvent.id))).all())
