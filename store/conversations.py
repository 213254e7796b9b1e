"""Conversations and their reply windows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case
from sqlmodel import Session, col, select

from store._dialect import insert
from store.models import Conversation


def record_inbound(session: Session, *, channel: str, account: str, customer: str,
                   message_at: datetime, message_id: str, customer_name: str | None,
                   now: datetime) -> int:
    """Create or update the conversation for an inbound message; the window only grows.

    One statement, so concurrent replicas cannot lose an update.
    """
    table = Conversation.__table__  # type: ignore[attr-defined]
    stmt = insert(session, table).values(
        channel=channel, account=account, customer=customer, customer_name=customer_name,
        last_inbound_at=message_at, last_inbound_message_id=message_id,
        created_at=now, updated_at=now,
    )
    newer = (table.c.last_inbound_at.is_(None)) | (stmt.excluded.last_inbound_at > table.c.last_inbound_at)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "account", "customer"],
        set_={
            "last_inbound_at": case((newer, stmt.excluded.last_inbound_at),
                                    else_=table.c.last_inbound_at),
            "last_inbound_message_id": case((newer, stmt.excluded.last_inbound_message_id),
                                            else_=table.c.last_inbound_message_id),
            "customer_name": case((stmt.excluded.customer_name.is_(None), table.c.customer_name),
                                  else_=stmt.excluded.customer_name),
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(table.c.id)
    return int(session.exec(stmt).scalar_one())  # type: ignore[call-overload]


def record_outbound(session: Session, *, channel: str, account: str, customer: str,
                    message_at: datetime, now: datetime) -> int:
    """Note a reply in the conversation (it answers the inbound messages before it)."""
    table = Conversation.__table__  # type: ignore[attr-defined]
    stmt = insert(session, table).values(
        channel=channel, account=account, customer=customer, last_outbound_at=message_at,
        created_at=now, updated_at=now,
    )
    newer = (table.c.last_outbound_at.is_(None)) | (stmt.excluded.last_outbound_at > table.c.last_outbound_at)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "account", "customer"],
        set_={
            "last_outbound_at": case((newer, stmt.excluded.last_outbound_at),
                                     else_=table.c.last_outbound_at),
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(table.c.id)
    return int(session.exec(stmt).scalar_one())  # type: ignore[call-overload]


def get(session: Session, *, channel: str, account: str, customer: str) -> Conversation | None:
    stmt = select(Conversation).where(
        Conversation.channel == channel, Conversation.account == account,
        Conversation.customer == customer,
    )
    return session.exec(stmt).first()


def by_last_inbound(session: Session, *, after: datetime, until: datetime, unanswered: bool,
                    accounts: list[str] | None, limit: int) -> list[Conversation]:
    """WhatsApp conversations whose last inbound message is in (after, until], oldest first:
    the caller turns window bounds into these instants."""
    stmt = select(Conversation).where(
        Conversation.channel == "whatsapp",
        col(Conversation.last_inbound_at) > after,
        col(Conversation.last_inbound_at) <= until,
    )
    if unanswered:
        stmt = stmt.where(
            (col(Conversation.last_outbound_at).is_(None))
            | (col(Conversation.last_outbound_at) < col(Conversation.last_inbound_at))
        )
    if accounts is not None:
        stmt = stmt.where(col(Conversation.account).in_(accounts))
    stmt = stmt.order_by(col(Conversation.last_inbound_at), col(Conversation.id)).limit(limit)
    return list(session.exec(stmt).all())
