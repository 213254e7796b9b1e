"""What the delivery reports read: the outbound messages asked for in a time range, as plain
rows of the columns a report needs, fetched in chunks (keyset pagination on created_at, id) so
that a long range never loads every row at once. The figures are made in receiver/reports.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from store.models import OutboundMessage

CHUNK = 1000


@dataclass(frozen=True)
class DeliveryRow:
    """One outbound message, as far as a report cares."""

    id: str
    created_at: datetime
    channel: str
    account: str
    route: str | None
    status: str
    accepted_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None
    rejected_at: datetime | None = None
    expired_at: datetime | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    billable: bool | None = None
    conversation_type: str | None = None
    cost: dict[str, Any] | None = None


_COLUMNS = (
    OutboundMessage.id, OutboundMessage.created_at, OutboundMessage.channel,
    OutboundMessage.account, OutboundMessage.route, OutboundMessage.status,
    OutboundMessage.accepted_at, OutboundMessage.sent_at, OutboundMessage.delivered_at,
    OutboundMessage.read_at, OutboundMessage.failed_at, OutboundMessage.rejected_at,
    OutboundMessage.expired_at, OutboundMessage.failure_code, OutboundMessage.failure_reason,
    OutboundMessage.billable, OutboundMessage.conversation_type, OutboundMessage.cost,
)


def delivery_rows(session: Session, *, since: datetime, until: datetime,
                  channel: str | None = None, accounts: list[str] | None = None,
                  chunk: int = CHUNK) -> Iterator[DeliveryRow]:
    """Messages created in [since, until), oldest first; `accounts` None means every account
    (an empty list means none). Reads `chunk` rows per query."""
    if accounts is not None and not accounts:
        return
    after: tuple[datetime, str] | None = None
    while True:
        stmt = select(*_COLUMNS).where(  # type: ignore[call-overload]
            col(OutboundMessage.created_at) >= since, col(OutboundMessage.created_at) < until)
        if channel is not None:
            stmt = stmt.where(OutboundMessage.channel == channel)
        if accounts is not None:
            stmt = stmt.where(col(OutboundMessage.account).in_(accounts))
        if after is not None:
            created, message_id = after
            stmt = stmt.where(
                (col(OutboundMessage.created_at) > created)
                | ((col(OutboundMessage.created_at) == created)
                   & (col(OutboundMessage.id) > message_id))
            )
        stmt = stmt.order_by(col(OutboundMessage.created_at), col(OutboundMessage.id))
        page = session.exec(stmt.limit(chunk)).all()
        for values in page:
            yield DeliveryRow(*values)
        if len(page) < chunk:
            return
        after = (page[-1][1], page[-1][0])
