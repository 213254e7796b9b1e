"""The tables. One shape from the start: sending (outbound messages, status events,
templates) lives here too, so the schema does not fork when sending lands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from store.db import UTCDateTime

Json = JSON().with_variant(JSONB(), "postgresql")


# The states nearly every body ends in: not worth indexing (see InboxBody's index).
COMMON_STATES = "('applied', 'duplicate')"


def sqlite_link(column: str, parent: str) -> ForeignKeyConstraint:
    """A foreign key that SQLite checks and PostgreSQL does not (migration 0007): the
    applier's links from what it writes to the body it came from and to the conversation.
    PostgreSQL checks each row by a trigger that queries and locks the parent's row, ~10 us
    of its CPU a body; SQLite probes the parent's key in-process. Alembic does not read
    `ddl_if`: store/migrations/env.py reads `info["only_on"]`."""
    return ForeignKeyConstraint([column], [f"{parent}.id"],
                                info={"only_on": "sqlite"}).ddl_if(dialect="sqlite")


class InboxBody(SQLModel, table=True):
    """Every webhook body as received, before anything is made of it."""

    __tablename__ = "inbox_bodies"
    # On PostgreSQL only the bodies in a rare state are indexed by state (migration 0006):
    # applying a body then adds no entry to this index (its pending one dies), so it stays
    # small, and the applier's scans and /metrics' counts of pending and failed bodies stay
    # cheap however many bodies are kept. SQLite updates its entries in place.
    __table_args__ = (Index("ix_inbox_bodies_state_id", "state", "id",
                            postgresql_where=text(f"state NOT IN {COMMON_STATES}")),)

    id: int | None = Field(default=None, primary_key=True)
    vendor: str = Field(max_length=16)  # itnio | yzj
    route: str = Field(max_length=32)  # whatsapp | sms | wecom
    received_at: datetime = Field(sa_type=UTCDateTime)
    headers: dict[str, str] = Field(default_factory=dict, sa_type=Json)
    body: bytes = Field(sa_type=LargeBinary)
    # The key of the first event the body carries (messageId, msgid+status, svrid, ...).
    # Not indexed: nothing looks bodies up by it (`event_keys` maps each key to its body),
    # and every stored body paid for the index (migration 0005).
    dedup_key: str | None = Field(default=None, max_length=255)
    # pending | applied | duplicate | flagged | stored | failed
    state: str = Field(default="pending", max_length=16)
    detail: str | None = None
    event_count: int = 0
    applied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class QuarantinedBody(SQLModel, table=True):
    """A body that could not be read; kept whole for the operator and for `inbox replay`."""

    __tablename__ = "quarantined_bodies"

    id: int | None = Field(default=None, primary_key=True)
    vendor: str = Field(max_length=16)
    route: str = Field(max_length=32)
    received_at: datetime = Field(sa_type=UTCDateTime)
    headers: dict[str, str] = Field(default_factory=dict, sa_type=Json)
    body: bytes = Field(sa_type=LargeBinary)
    error: str = Field(max_length=64)
    detail: str
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    inbox_body_id: int | None = Field(default=None, foreign_key="inbox_bodies.id")


class EventKey(SQLModel, table=True):
    """One row per applied event: the unique key is what makes effects exactly-once."""

    __tablename__ = "event_keys"
    __table_args__ = (sqlite_link("inbox_body_id", "inbox_bodies"),)

    key: str = Field(primary_key=True, max_length=255)
    inbox_body_id: int | None = None
    applied_at: datetime = Field(sa_type=UTCDateTime)


class Conversation(SQLModel, table=True):
    """A customer as seen from one account of one channel; holds the reply window."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("channel", "account", "customer", name="uq_conversations_key"),
        Index("ix_conversations_window", "channel", "last_inbound_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)  # whatsapp | sms | wecom
    account: str = Field(max_length=64)  # business phone, SMS sender id, or staff wxid
    customer: str = Field(max_length=64)  # customer phone, customer or group wxid
    customer_name: str | None = Field(default=None, max_length=255)
    last_inbound_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_inbound_message_id: str | None = Field(default=None, max_length=255)
    last_outbound_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ChatMessage(SQLModel, table=True):
    """A message seen in a conversation: every inbound one, and outbound ones that did not
    go through us (a person typing on the staff account)."""

    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_vendor_id", "channel", "vendor_message_id"),
                      sqlite_link("conversation_id", "conversations"),
                      sqlite_link("inbox_body_id", "inbox_bodies"))

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(index=True)
    channel: str = Field(max_length=16)
    direction: str = Field(max_length=8)  # in | out
    vendor_message_id: str = Field(max_length=255)
    msg_type: str = Field(max_length=32)
    text: str | None = None
    content: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    sent_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    inbox_body_id: int | None = None


class Template(SQLModel, table=True):
    """A WhatsApp template as ITNIO knows it (synced, kept current by status pushes)."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("name", "language", name="uq_templates_name_language"),)

    id: int | None = Field(default=None, primary_key=True)
    vendor_template_id: str | None = Field(default=None, max_length=64, index=True)
    name: str = Field(max_length=255)
    language: str = Field(max_length=16)
    category: str | None = Field(default=None, max_length=32)
    status: str = Field(max_length=32)
    reason: str | None = None
    components: list[Any] = Field(default_factory=list, sa_type=Json)
    status_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    synced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboundMessage(SQLModel, table=True):
    """A reply a bot asked us to send, and everything that became of it."""

    __tablename__ = "outbound_messages"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_outbound_idempotency"),
        Index("ix_outbound_vendor_id", "channel", "vendor_message_id"),
        Index("ix_outbound_client_ref", "channel", "client_ref"),
        Index("ix_outbound_due", "status", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=40)  # msg_...
    channel: str = Field(max_length=16)
    account: str = Field(max_length=64)
    recipient: str = Field(max_length=64)
    conversation_id: int | None = Field(default=None, foreign_key="conversations.id")
    route: str | None = Field(default=None, max_length=16)  # custom | template | sms
    status: str = Field(default="queued", max_length=16)
    request: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    api_key_id: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    reply_to: str | None = Field(default=None, max_length=255)
    vendor_message_id: str | None = Field(default=None, max_length=255)
    client_ref: str | None = Field(default=None, max_length=255)  # our api_send_id / orderId
    fallback_reason: str | None = Field(default=None, max_length=64)
    # The custom message this one re-sends by a fallback after the vendor refused it (131047).
    fallback_of: str | None = Field(default=None, max_length=40, foreign_key="outbound_messages.id")
    # The answer the first POST got, returned again for the same Idempotency-Key.
    first_answer: dict[str, Any] | None = Field(default=None, sa_type=Json)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    send_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    status_at: datetime = Field(sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rejected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failure_code: str | None = Field(default=None, max_length=64)
    failure_reason: str | None = None
    # A delivered/read that came after a failure: the customer has it, but look twice.
    flagged: bool = False
    billable: bool | None = None
    conversation_type: str | None = Field(default=None, max_length=32)
    cost: dict[str, Any] | None = Field(default=None, sa_type=Json)


class OptOut(SQLModel, table=True):
    """A contact (phone number) that asked for no marketing templates and no SMS."""

    __tablename__ = "opt_outs"

    customer: str = Field(primary_key=True, max_length=64)
    opted_out: bool
    changed_at: datetime = Field(sa_type=UTCDateTime)
    source: str = Field(max_length=64)  # e.g. "whatsapp:STOP", "sms:退订", "vendor:131050"


class AccountPacing(SQLModel, table=True):
    """When a WeCom staff account may next send, so it never sends faster than its rate."""

    __tablename__ = "account_pacing"

    account: str = Field(primary_key=True, max_length=64)
    next_free_at: datetime = Field(sa_type=UTCDateTime)


class StatusEvent(SQLModel, table=True):
    """A status the vendor reported, kept even when its message is not (yet) known to us:
    a push can beat the vendor's answer to our own call."""

    __tablename__ = "status_events"
    __table_args__ = (
        Index("ix_status_events_vendor_id", "channel", "vendor_message_id"),
        Index("ix_status_events_client_ref", "channel", "client_ref"),
        sqlite_link("inbox_body_id", "inbox_bodies"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    vendor_message_id: str | None = Field(default=None, max_length=255)
    client_ref: str | None = Field(default=None, max_length=255)
    message_id: str | None = Field(default=None, foreign_key="outbound_messages.id", index=True)
    status: str = Field(max_length=16)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    failure_code: str | None = Field(default=None, max_length=64)
    failure_reason: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    inbox_body_id: int | None = None


class Event(SQLModel, table=True):
    """Something a bot hears about, in the transaction that made it happen. The feed's cursor
    is (txid, id): on PostgreSQL ids are not handed out in commit order, transaction ids of
    finished transactions are (see store/events.py)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_cursor", "txid", "id"),
        Index("ix_events_push", "push_state", "next_push_at"),
        Index("ix_events_conversation", "conversation_key", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    txid: int = Field(default=0, sa_type=BigInteger)
    kind: str = Field(max_length=32)  # message.inbound, message.status, message.route, ...
    account: str = Field(max_length=64)
    conversation_key: str = Field(max_length=160)  # channel:account:customer, for push order
    data: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    created_at: datetime = Field(sa_type=UTCDateTime)
    # off (no bot URL when it happened) | pending | delivered | dead
    push_state: str = Field(default="off", max_length=16)
    push_attempts: int = 0
    next_push_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    pushed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    push_error: str | None = None


class ApiKey(SQLModel, table=True):
    """A bot API key, stored as its SHA-256 (keys are random, so no slow hash is needed)."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    accounts: list[str] | None = Field(default=None, sa_type=Json)  # None: every account
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AppSecret(SQLModel, table=True):
    """Secrets the service generated for itself (webhook token, bot webhook secret)."""

    __tablename__ = "app_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=255)
    created_at: datetime = Field(sa_type=UTCDateTime)
