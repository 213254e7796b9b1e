"""The events a bot hears, built in one place and written in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from store import events
from store.models import OutboundMessage
from store.utc_text import iso_z


def conversation_key(channel: str, account: str, customer: str) -> str:
    return f"{channel}:{account}:{customer}"[:160]


def event_row(kind: str, *, channel: str, account: str, customer: str, data: dict[str, Any],
              now: datetime, push: bool) -> dict[str, Any]:
    return events.row(kind=kind, account=account,
                      conversation_key=conversation_key(channel, account, customer),
                      data={"channel": channel, "account": account, "customer": customer,
                            **data},
                      now=now, push=push)


def emit(session: Session, kind: str, *, channel: str, account: str, customer: str,
         data: dict[str, Any], now: datetime, push: bool) -> None:
    events.add_many(session, [event_row(kind, channel=channel, account=account,
                                        customer=customer, data=data, now=now, push=push)])


def inbound_row(*, channel: str, account: str, customer: str, message_id: str, msg_type: str,
                text: str | None, content: dict[str, Any], sent_at: datetime,
                customer_name: str | None, now: datetime, push: bool) -> dict[str, Any]:
    """message.inbound, as a row to write (the applier writes a batch's in one go)."""
    return event_row("message.inbound", channel=channel, account=account, customer=customer,
                     data={"message_id": message_id, "type": msg_type, "text": text,
                           "content": content, "sent_at": iso_z(sent_at),
                           "customer_name": customer_name},
                     now=now, push=push)


def message_event(session: Session, kind: str, message: OutboundMessage, *, now: datetime,
                  push: bool, **extra: Any) -> None:
    """message.status, message.route, message.refused, message.fallback: about one of ours."""
    emit(session, kind, channel=message.channel, account=message.account,
         customer=message.recipient,
         data={"id": message.id, "route": message.route, "status": message.status,
               "fallback_reason": message.fallback_reason, "fallback_of": message.fallback_of,
               "failure": ({"code": message.failure_code, "reason": message.failure_reason}
                           if message.failure_code or message.failure_reason else None),
               "flagged": message.flagged, **extra},
         now=now, push=push)
