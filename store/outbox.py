"""Outbound messages as a durable queue: add, claim (once across replicas), page, look up."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, exists, insert, update
from sqlalchemy.engine import Row
from sqlmodel import Session, col, or_, select

from store import bulk, conversations
from store.models import Conversation, OptOut, OutboundMessage, StatusEvent

# -- the send path's statements: Core, built once (SQLAlchemy caches their compiled form) ----

_MESSAGES = OutboundMessage.__table__  # type: ignore[attr-defined]
_EVENTS = StatusEvent.__table__  # type: ignore[attr-defined]
_CONVERSATIONS = Conversation.__table__  # type: ignore[attr-defined]
_OPT_OUTS = OptOut.__table__  # type: ignore[attr-defined]

# Every column a new message row holds, with the model's defaults.
NEW_ROW: dict[str, Any] = {column.name: None for column in _MESSAGES.columns} | {
    "status": "queued", "request": {}, "attempts": 0, "flagged": False}

ADD = insert(_MESSAGES)
_BY_IDEMPOTENCY_KEY = select(_MESSAGES).where(
    _MESSAGES.c.api_key_id == bindparam("api_key_id"),
    _MESSAGES.c.idempotency_key == bindparam("key"))
_UPDATE = update(_MESSAGES).where(_MESSAGES.c.id == bindparam("_id"))
_ROUTE_FACTS = select(
    select(_CONVERSATIONS.c.last_inbound_at).where(
        _CONVERSATIONS.c.channel == bindparam("channel"),
        _CONVERSATIONS.c.account == bindparam("account"),
        _CONVERSATIONS.c.customer == bindparam("customer"),
    ).scalar_subquery().label("last_inbound_at"),
    select(_OPT_OUTS.c.opted_out).where(
        _OPT_OUTS.c.customer == bindparam("customer")).scalar_subquery().label("opted_out"),
)
# The message locked, with what recording the vendor's answer needs to know besides: whether
# status events about it came first (orphans), and its conversation's last inbound time.
# Only the columns recording an answer and the bot's answer read or write (not the request,
# nor the first answer itself: whether there is one), so none of the others is converted.
_DELIVERY_CHANNEL = case((_MESSAGES.c.route == "sms", "sms"), else_=_MESSAGES.c.channel)
ANSWER_COLUMNS = (
    "id", "channel", "account", "recipient", "route", "status", "vendor_message_id",
    "fallback_reason", "fallback_of", "send_at", "created_at", "status_at", "accepted_at",
    "sent_at", "delivered_at", "read_at", "failed_at", "rejected_at", "expired_at",
    "failure_code", "failure_reason", "flagged", "billable", "conversation_type", "cost")
_FOR_ANSWER = select(
    *(_MESSAGES.c[name] for name in ANSWER_COLUMNS),
    _MESSAGES.c.first_answer.is_(None).label("first_answer_missing"),
    select(_CONVERSATIONS.c.last_inbound_at).where(
        _CONVERSATIONS.c.channel == _MESSAGES.c.channel,
        _CONVERSATIONS.c.account == _MESSAGES.c.account,
        _CONVERSATIONS.c.customer == _MESSAGES.c.recipient,
    ).scalar_subquery().label("conversation_last_inbound_at"),
    exists().where(
        _EVENTS.c.channel == _DELIVERY_CHANNEL, _EVENTS.c.message_id.is_(None),
        or_(_EVENTS.c.vendor_message_id == bindparam("vendor_message_id"),
            _EVENTS.c.client_ref == _MESSAGES.c.client_ref),
    ).label("has_orphans"),
).where(_MESSAGES.c.id == bindparam("id")).with_for_update(of=_MESSAGES)

def _flush_pending(session: Session) -> None:
    """Core statements skip autoflush: ORM changes made earlier in the transaction go first."""
    if session.dirty or session.new:
        session.flush()


# The writers below take a Session, or a stand-in that leaves the write to the end of a group
# commit's batch (sender/group_commit.py: Deferring): they only use .connection().execute.


def add_row(session: Session, fields: dict[str, Any]) -> None:
    """Insert a message: `fields` is a whole row (NEW_ROW with the message's values). Only
    the columns that hold something are named (NULL, or the column's default, otherwise):
    fewer parameters to process, and the few shapes there are each compile once."""
    session.connection().execute(ADD, {k: v for k, v in fields.items() if v is not None})


def row_for_answer(session: Session, message_id: str, *,
                   vendor_message_id: str | None) -> dict[str, Any] | None:
    """The message locked (ANSWER_COLUMNS by name), with `first_answer_missing`,
    `conversation_last_inbound_at` and `has_orphans` (status events that name
    `vendor_message_id` or its client ref and were stored before we knew their message), in
    one statement."""
    _flush_pending(session)
    return bulk.first(session.connection(), _FOR_ANSWER, {
        "id": message_id, "vendor_message_id": vendor_message_id})


def row_by_idempotency_key(session: Session, *, api_key_id: str, key: str) -> Row[Any] | None:
    _flush_pending(session)
    return session.connection().execute(
        _BY_IDEMPOTENCY_KEY, {"api_key_id": api_key_id, "key": key}).first()


def update_row(session: Session, message_id: str, values: dict[str, Any]) -> None:
    if values:
        # The SET clause is made of the keys given (compiled once per set of keys).
        session.connection().execute(_UPDATE, {"_id": message_id, **values})


def route_facts(session: Session, *, channel: str, account: str,
                recipient: str) -> tuple[datetime | None, bool]:
    """What a route is decided from, in one statement: the conversation's last inbound
    message time, and whether the recipient opted out."""
    _flush_pending(session)
    found = bulk.first(session.connection(), _ROUTE_FACTS, {
        "channel": channel, "account": account, "customer": recipient})
    assert found is not None  # a SELECT of two scalar subqueries has one row
    return found["last_inbound_at"], bool(found["opted_out"])


def record_reply(session: Session, *, channel: str, account: str, customer: str,
                 at: datetime, now: datetime) -> None:
    """Note a reply sent at `at` in its conversation (as conversations.record_outbound)."""
    session.connection().execute(conversations.RECORD_REPLY, {
        "channel": channel, "account": account, "customer": customer, "at": at, "now": now})


def get(session: Session, message_id: str, *, for_update: bool = False) -> OutboundMessage | None:
    stmt = select(OutboundMessage).where(OutboundMessage.id == message_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def claim_due(session: Session, *, now: datetime, limit: int,
              lease: timedelta) -> list[OutboundMessage]:
    """Queued messages that are due, marked `sending` until `now + lease`.

    FOR UPDATE SKIP LOCKED lets every replica claim at once without ever claiming the same
    row; on SQLite the write lock taken by BEGIN IMMEDIATE does the same job.
    """
    stmt = (
        select(OutboundMessage)
        .where(OutboundMessage.status == "queued", col(OutboundMessage.next_attempt_at) <= now)
        .order_by(col(OutboundMessage.next_attempt_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(session.exec(stmt).all())
    for row in rows:
        row.status, row.next_attempt_at = "sending", now + lease
        row.attempts += 1
        session.add(row)
    return rows


def stale_sending(session: Session, *, now: datetime, limit: int = 500) -> list[OutboundMessage]:
    """`sending` messages whose lease ran out: the process died during the vendor call."""
    stmt = (
        select(OutboundMessage)
        .where(OutboundMessage.status == "sending", col(OutboundMessage.next_attempt_at) < now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(stmt).all())


def unfinished(session: Session, *, channel: str | None, statuses: tuple[str, ...],
               before: datetime, created: bool = False,
               limit: int = 500) -> list[OutboundMessage]:
    """Messages in `statuses` last changed (or, with `created`, created) before `before`,
    claimed for a sweep so that replicas sweeping together never take the same row."""
    column = col(OutboundMessage.created_at if created else OutboundMessage.status_at)
    stmt = select(OutboundMessage).where(col(OutboundMessage.status).in_(statuses),
                                         column < before)
    if channel is not None:
        stmt = stmt.where(OutboundMessage.channel == channel)
    stmt = stmt.order_by(column).limit(limit)
    return list(session.exec(stmt.with_for_update(skip_locked=True)).all())


def orphan_events(session: Session, *, channel: str, vendor_message_id: str | None,
                  client_ref: str | None) -> list[StatusEvent]:
    """Status events that arrived before we knew which message they were about."""
    matches = []
    if vendor_message_id:
        matches.append(col(StatusEvent.vendor_message_id) == vendor_message_id)
    if client_ref:
        matches.append(col(StatusEvent.client_ref) == client_ref)
    if not matches:
        return []
    stmt = select(StatusEvent).where(StatusEvent.channel == channel,
                                     col(StatusEvent.message_id).is_(None), or_(*matches))
    return list(session.exec(
        stmt.order_by(col(StatusEvent.occurred_at), col(StatusEvent.id))).all())


def orphans_since(session: Session, *, channel: str, since: datetime,
                  limit: int = 500) -> list[StatusEvent]:
    """Status events about no message yet, received since `since`, oldest first (locked, so
    two messages never adopt the same ones)."""
    stmt = (
        select(StatusEvent)
        .where(StatusEvent.channel == channel, col(StatusEvent.message_id).is_(None),
               col(StatusEvent.vendor_message_id).is_not(None),
               col(StatusEvent.received_at) >= since)
        .order_by(col(StatusEvent.received_at), col(StatusEvent.id))
        .limit(limit)
        .with_for_update()
    )
    return list(session.exec(stmt).all())


def stranded_orphans(session: Session, *, since: datetime, limit: int = 500) -> list[str]:
    """Ids of messages that have the vendor id of a status event received since `since` and
    still linked to no message (it was stored while the answer naming it was recorded)."""
    stmt = (
        select(OutboundMessage.id, OutboundMessage.channel, OutboundMessage.route,
               StatusEvent.channel)
        .join(StatusEvent, col(StatusEvent.vendor_message_id)
              == col(OutboundMessage.vendor_message_id))
        .where(col(StatusEvent.message_id).is_(None), col(StatusEvent.received_at) >= since)
        .limit(limit)
    )
    found: list[str] = []
    for message_id, channel, route, event_channel in session.exec(stmt).all():
        # The channel the vendor reports on: a WhatsApp request sent by SMS is reported as SMS.
        if ("sms" if route == "sms" else channel) == event_channel and message_id not in found:
            found.append(message_id)
    return found


def others_sending(session: Session, *, message: OutboundMessage) -> bool:
    """Whether another message to the same recipient is in a vendor call right now."""
    stmt = select(OutboundMessage.id).where(
        OutboundMessage.channel == message.channel, OutboundMessage.status == "sending",
        OutboundMessage.account == message.account,
        OutboundMessage.recipient == message.recipient, OutboundMessage.id != message.id)
    return session.exec(stmt.limit(1)).first() is not None


def unknown_for(session: Session, *, channel: str, account: str, recipient: str,
                sent_before: datetime) -> OutboundMessage | None:
    """The oldest message held as unknown (its call timed out) to this recipient: a status
    push naming a message id we never learnt is most likely about it."""
    table = OutboundMessage.__table__  # type: ignore[attr-defined]
    if session.dirty or session.new:
        session.flush()  # Core queries skip autoflush
    found = session.connection().execute(
        select(table.c.id)
        .where(table.c.status == "unknown", table.c.channel == channel,
               table.c.account == account, table.c.recipient == recipient,
               table.c.vendor_message_id.is_(None), table.c.created_at <= sent_before)
        .order_by(table.c.created_at)
        .limit(1)
    ).scalar()
    return session.get(OutboundMessage, found, with_for_update=True) if found else None


def page(session: Session, *, channel: str | None, to: str | None, status: str | None,
         since: datetime | None, accounts: list[str] | None, after: tuple[datetime, str] | None,
         limit: int) -> list[OutboundMessage]:
    """Newest first; `after` is the (created_at, id) of the last row of the previous page."""
    stmt = select(OutboundMessage)
    if channel:
        stmt = stmt.where(OutboundMessage.channel == channel)
    if to:
        stmt = stmt.where(OutboundMessage.recipient == to)
    if status:
        stmt = stmt.where(OutboundMessage.status == status)
    if since:
        stmt = stmt.where(col(OutboundMessage.created_at) >= since)
    if accounts is not None:
        stmt = stmt.where(col(OutboundMessage.account).in_(accounts))
    if after is not None:
        created, message_id = after
        stmt = stmt.where(
            (col(OutboundMessage.created_at) < created)
            | ((col(OutboundMessage.created_at) == created)
               & (col(OutboundMessage.id) < message_id))
        )
    stmt = stmt.order_by(col(OutboundMessage.created_at).desc(), col(OutboundMessage.id).desc())
    return list(session.exec(stmt.limit(limit)).all())
