"""What the applier does once per batch instead of once per event: claim every event key in
one statement, learn which message ids are ours in one query, and write the rows nothing
reads back within the batch (chat messages, inbound bot events, status reports about no
message of ours) as one executemany each.

A statement through SQLAlchemy costs far more than SQLite takes to run it; per batch, not
per event, that cost vanishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from store import bulk, conversations, events, messages, optouts
from store.models import ChatMessage, EventKey, OutboundMessage, StatusEvent

# Keeps each IN (...) list well inside SQLite's limit on bound parameters.
CHUNK = 500
_KEYS = EventKey.__table__  # type: ignore[attr-defined]
_OUTBOUND = OutboundMessage.__table__  # type: ignore[attr-defined]
_STATUS_EVENTS = StatusEvent.__table__  # type: ignore[attr-defined]
ADD_STATUS_EVENTS = bulk.insert_many(_STATUS_EVENTS, [
    c.name for c in _STATUS_EVENTS.columns if c.name != "id"])
_CHAT_MESSAGES = ChatMessage.__table__  # type: ignore[attr-defined]
ADD_CHAT_MESSAGES = bulk.insert_many(_CHAT_MESSAGES, [
    c.name for c in _CHAT_MESSAGES.columns if c.name != "id"])
CLAIM_KEYS = bulk.Rows(_KEYS, ("key", "inbox_body_id", "applied_at"),
                       pg_types=("text", "bigint", "timestamptz"),
                       tail='ON CONFLICT ("key") DO NOTHING RETURNING "key"')
KNOWN_REFS = ("SELECT vendor_message_id, client_ref FROM outbound_messages "
              "WHERE channel = ? AND ")
ANY_UNKNOWN = (select(_OUTBOUND.c.id)
               .where(_OUTBOUND.c.status == "unknown", _OUTBOUND.c.channel == "whatsapp",
                      _OUTBOUND.c.vendor_message_id.is_(None))
               .limit(1))


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def claim_keys(session: Session, claims: list[tuple[str, int | None]], *,
               now: datetime) -> set[str]:
    """Claim (key, inbox_body_id) pairs, in order; the keys that were not taken before.

    ON CONFLICT DO NOTHING with RETURNING says exactly which rows went in, even against
    another transaction claiming the same key at the same moment (PostgreSQL makes the
    second wait for the first). Within the list, the first claim of a key is the one kept."""
    rows = [{"key": key, "inbox_body_id": body_id, "applied_at": now}
            for key, body_id in claims]
    return {key for (key,) in CLAIM_KEYS.run(session.connection(), rows)}


def known_refs(session: Session, *, vendor_ids: list[tuple[str, str]],
               client_refs: list[tuple[str, str]]) -> set[str]:
    """Of these (channel, vendor message id) and (channel, client ref) pairs, the ids and
    refs that some outbound message of that channel carries. Asked channel by channel: the
    indexes lead with the channel, and by id alone SQLite would scan the whole table."""
    wanted: dict[tuple[str, str], dict[str, None]] = {}  # (column, channel) -> values
    for column, pairs in (("vendor_message_id", vendor_ids), ("client_ref", client_refs)):
        for channel, value in pairs:
            for kept_as in messages.channels_reported_on(channel):
                wanted.setdefault((column, kept_as), {})[value] = None
    found: set[str] = set()
    connection = session.connection()
    for (column, channel), values in wanted.items():
        for chunk in _chunks(list(values)):
            condition, params = bulk.any_of(connection.dialect, column, chunk, "text")
            for vendor_id, ref in bulk.read(connection, KNOWN_REFS + condition,
                                            [channel, *params]):
                found.update(v for v in (vendor_id, ref) if v)
    return found


def any_unknown_whatsapp(session: Session) -> bool:
    """Whether any WhatsApp send is held as unknown with no id (one a push could be about)."""
    return session.connection().execute(ANY_UNKNOWN).first() is not None


@dataclass
class Deferred:
    """Inserts held back to the end of the batch, or to the moment anything else is written
    or read (`flush`), so every row still goes in in the order the events came."""

    inbound: list[dict[str, Any]] = field(default_factory=list)  # conversations' upserts
    outbound: list[dict[str, Any]] = field(default_factory=list)
    # A chat message's conversation_id may be its (channel, account, customer), until the
    # upserts above are written and the ids known.
    chat_messages: list[dict[str, Any]] = field(default_factory=list)
    status_events: list[dict[str, Any]] = field(default_factory=list)
    bot_events: list[dict[str, Any]] = field(default_factory=list)
    opt_choices: list[dict[str, Any]] = field(default_factory=list)  # STOP / START
    conversation_ids: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def flush(self, session: Session) -> None:
        connection = session.connection()
        if self.inbound or self.outbound:
            self.conversation_ids.update(
                conversations.record_inbounds(session, self.inbound, self.outbound))
            self.inbound, self.outbound = [], []
        for row in self.chat_messages:
            if isinstance(row["conversation_id"], tuple):
                row["conversation_id"] = self.conversation_ids[row["conversation_id"]]
        if self.chat_messages:
            ADD_CHAT_MESSAGES.run(connection, self.chat_messages)
            self.chat_messages = []
        if self.status_events:
            ADD_STATUS_EVENTS.run(connection, self.status_events)
            self.status_events = []
        if self.bot_events:
            events.add_many(session, self.bot_events)
            self.bot_events = []
        if self.opt_choices:
            optouts.record_many(session, self.opt_choices)
            self.opt_choices = []
