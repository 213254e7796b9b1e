"""Conversations and their reply windows."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Engine, bindparam, event, text
from sqlalchemy.engine import Dialect
from sqlmodel import Session, col, select

from store import bulk
from store.db import UTCDateTime
from store.models import Conversation

if TYPE_CHECKING:  # asyncpg is imported only on PostgreSQL
    from store.pg_reads import AsyncReads

# Plain SQL both databases speak, so it is compiled once (see store/inbox.py CLAIM). The
# window only grows: a late, older message changes nothing. SET sees the old row throughout.
_ON_INBOUND_CONFLICT = """
ON CONFLICT (channel, account, customer) DO UPDATE SET
  last_inbound_message_id = CASE
    WHEN conversations.last_inbound_at IS NULL
      OR excluded.last_inbound_at > conversations.last_inbound_at
    THEN excluded.last_inbound_message_id ELSE conversations.last_inbound_message_id END,
  last_inbound_at = CASE
    WHEN conversations.last_inbound_at IS NULL
      OR excluded.last_inbound_at > conversations.last_inbound_at
    THEN excluded.last_inbound_at ELSE conversations.last_inbound_at END,
  customer_name = COALESCE(excluded.customer_name, conversations.customer_name),
  updated_at = excluded.updated_at
"""
_RECORD_INBOUND_SQL = """
INSERT INTO conversations (channel, account, customer, customer_name, last_inbound_at,
                           last_inbound_message_id, created_at, updated_at)
VALUES (:channel, :account, :customer, :customer_name, :at, :message_id, :now, :now)
""" + _ON_INBOUND_CONFLICT
_TIMES = (bindparam("at", type_=UTCDateTime()), bindparam("now", type_=UTCDateTime()))
RECORD_INBOUND = text(_RECORD_INBOUND_SQL + "RETURNING id\n").bindparams(*_TIMES)


def record_inbound(session: Session, *, channel: str, account: str, customer: str,
                   message_at: datetime, message_id: str, customer_name: str | None,
                   now: datetime) -> int:
    """Create or update the conversation for an inbound message; the window only grows.

    One statement, so concurrent replicas cannot lose an update.
    """
    found = session.connection().execute(RECORD_INBOUND, {
        "channel": channel, "account": account, "customer": customer,
        "customer_name": customer_name, "at": message_at, "message_id": message_id, "now": now})
    return int(found.scalar_one())


_TABLE = Conversation.__table__  # type: ignore[attr-defined]
Key = tuple[str, str, str]
_RETURNING = " RETURNING id, channel, account, customer"
_INBOUND_COLUMNS = ("channel", "account", "customer", "customer_name", "last_inbound_at",
                    "last_inbound_message_id", "created_at", "updated_at")
UPSERT_INBOUNDS = bulk.Rows(_TABLE, _INBOUND_COLUMNS, pg_types=(
    "text", "text", "text", "text", "timestamptz", "text", "timestamptz", "timestamptz"),
    tail=_ON_INBOUND_CONFLICT + _RETURNING)


def _later(current: datetime | None, new: datetime | None) -> bool:
    """Whether the statements' CASE takes `new` over `current` (a strictly later time; any
    time, even none, over none)."""
    return current is None or (new is not None and new > current)


def _merged(rows: list[dict[str, Any]], latest: dict[str, str], *,
            named: bool) -> list[dict[str, Any]]:
    """One row a conversation, with what upserting each row in turn would leave (a
    statement may not update one row twice: PostgreSQL refuses it). `latest`: the columns
    taken together from the row whose time (`at`, the first column) is the latest, from the
    row's keys; `named`: the last name given is kept."""
    time_column = next(iter(latest))
    merged: dict[Key, dict[str, Any]] = {}
    for row in rows:
        key = (row["channel"], row["account"], row["customer"])
        into = merged.get(key)
        if into is None:
            into = merged[key] = {"channel": key[0], "account": key[1], "customer": key[2],
                                  "created_at": row["now"]}
            if named:
                into["customer_name"] = None
            take = True
        else:
            take = _later(into[time_column], row["at"])
        if take:
            for column, field in latest.items():
                into[column] = row[field]
        if named and row["customer_name"] is not None:
            into["customer_name"] = row["customer_name"]
        into["updated_at"] = row["now"]
    return list(merged.values())


_LATEST_INBOUND = {"last_inbound_at": "at", "last_inbound_message_id": "message_id"}
_LATEST_OUTBOUND = {"last_outbound_at": "at"}


def record_inbounds(session: Session, rows: list[dict[str, Any]],
                    outbound: list[dict[str, Any]] | None = None) -> dict[Key, int]:
    """`record_inbound` for many messages (rows of its keyword arguments, `message_at` as
    `at`), in order, and `record_outbound` for the `outbound` rows (the same keys); the id of
    each (channel, account, customer). One statement each, whose RETURNING gives the ids
    (PostgreSQL: the rows as arrays, unnested): a conversation's rows are merged first into
    what doing them one by one would leave. The two kinds touch different columns and each
    only moves forward, so doing one kind before the other changes nothing."""
    connection = session.connection()
    ids: dict[Key, int] = {}
    found = [*UPSERT_INBOUNDS.run(connection, _merged(rows, _LATEST_INBOUND, named=True)),
             *UPSERT_OUTBOUNDS.run(connection, _merged(outbound or [], _LATEST_OUTBOUND,
                                                       named=False))]
    for id_, *key in found:
        ids[tuple(key)] = id_  # type: ignore[index]
    return ids


# A reply noted in its conversation (it answers the inbound messages before it); plain SQL,
# compiled once, like RECORD_INBOUND.
_ON_OUTBOUND_CONFLICT = """
ON CONFLICT (channel, account, customer) DO UPDATE SET
  last_outbound_at = CASE
    WHEN conversations.last_outbound_at IS NULL
      OR excluded.last_outbound_at > conversations.last_outbound_at
    THEN excluded.last_outbound_at ELSE conversations.last_outbound_at END,
  updated_at = excluded.updated_at
"""
_RECORD_OUTBOUND_SQL = """
INSERT INTO conversations (channel, account, customer, last_outbound_at, created_at, updated_at)
VALUES (:channel, :account, :customer, :at, :now, :now)
""" + _ON_OUTBOUND_CONFLICT
RECORD_OUTBOUND = text(_RECORD_OUTBOUND_SQL + "RETURNING id\n").bindparams(*_TIMES)
# The same, through SQLAlchemy: for writers handed a stand-in for a session
# (sender/group_commit.py) that only offers .connection().execute.
RECORD_REPLY = text(_RECORD_OUTBOUND_SQL).bindparams(*_TIMES)
_OUTBOUND_COLUMNS = ("channel", "account", "customer", "last_outbound_at", "created_at",
                     "updated_at")
UPSERT_OUTBOUNDS = bulk.Rows(_TABLE, _OUTBOUND_COLUMNS, pg_types=(
    "text", "text", "text", "timestamptz", "timestamptz", "timestamptz"),
    tail=_ON_OUTBOUND_CONFLICT + _RETURNING)


def record_outbound(session: Session, *, channel: str, account: str, customer: str,
                    message_at: datetime, now: datetime) -> int:
    """Note a reply in the conversation (it answers the inbound messages before it)."""
    found = session.connection().execute(RECORD_OUTBOUND, {
        "channel": channel, "account": account, "customer": customer, "at": message_at,
        "now": now})
    return int(found.scalar_one())


def get(session: Session, *, channel: str, account: str, customer: str) -> Conversation | None:
    stmt = select(Conversation).where(
        Conversation.channel == channel, Conversation.account == account,
        Conversation.customer == customer,
    )
    return session.exec(stmt).first()


class WindowTimes(NamedTuple):
    """What a reply window is made of (the attributes `receiver.windows_api.window_body`
    reads, as on a Conversation)."""

    last_inbound_at: datetime | None
    last_outbound_at: datetime | None


# GET /v1/windows/whatsapp/{b}/{r}, the bots' hot path: one read by the unique key
# (uq_conversations_key), no ORM object, no transaction around it.
WINDOW_SQL = ("SELECT last_inbound_at, last_outbound_at FROM conversations "
              "WHERE channel = ? AND account = ? AND customer = ?")
_TIME = UTCDateTime()
_time_readers: weakref.WeakKeyDictionary[Dialect, Any] = weakref.WeakKeyDictionary()


def _time_reader(dialect: Dialect) -> Any:
    """The column type's own result conversion for `dialect` (SQLite's text -> aware UTC)."""
    reader = _time_readers.get(dialect)
    if reader is None:
        impl = _TIME.dialect_impl(dialect)
        reader = _time_readers[dialect] = impl.result_processor(dialect, None) or (lambda v: v)
    return reader


class _SqliteReaders(threading.local):
    """Per thread, a read-only connection to one SQLite file."""

    cursor: sqlite3.Cursor | None = None


# The lookups' connections read the database file through a memory map: a page not in the
# connection's own cache is read where the kernel keeps it, not copied in by a system call
# (one a level of the two B-trees a lookup walks). Measured at half rate on a million
# windows: 70-72 against 74-80 us of the server's CPU a lookup (docs/performance.md,
# "Eighteenth pass"). SQLite caps it at its build's limit (2 GB here); pages past that are
# read as before. The pages mapped count in the process's RSS, as the kernel's page cache.
READER_MMAP_BYTES = 1 << 40

_sqlite_readers: weakref.WeakKeyDictionary[Engine, _SqliteReaders] = weakref.WeakKeyDictionary()
_opened: weakref.WeakKeyDictionary[Engine, list[sqlite3.Connection]] = \
    weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def _sqlite_reader(engine: Engine) -> sqlite3.Cursor | None:
    """A cursor on this thread's read-only connection to `engine`'s SQLite file; None for an
    in-memory database (another connection would not see it). Closed with the engine."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    readers = _sqlite_readers.get(engine)
    if readers is None:
        with _readers_lock:
            readers = _sqlite_readers.get(engine)
            if readers is None:
                readers = _sqlite_readers[engine] = _SqliteReaders()
                _opened[engine] = []
                event.listen(engine, "engine_disposed", _close_readers)
    if readers.cursor is None:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA query_only = ON")
        connection.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
        with _readers_lock:
            _opened[engine].append(connection)
        readers.cursor = connection.cursor()
    return readers.cursor


def _close_readers(engine: Engine) -> None:
    with _readers_lock:
        for connection in _opened.pop(engine, []):
            connection.close()
        _sqlite_readers.pop(engine, None)


def window_times(engine: Engine, *, channel: str, account: str,
                 customer: str) -> WindowTimes | None:
    """The conversation's window times, or None if it has none: one statement, one snapshot.
    SQLite (PostgreSQL: `window_times_pg`).

    A read-only connection of this thread's own, in sqlite3's autocommit mode (a
    pooled one costs a checkout and a reset on return, more than the read; the engine's
    `begin` hook would wrap a SQLAlchemy connection in BEGIN ... ROLLBACK). A single SELECT
    is its own read transaction; it never waits for a writer under WAL. Fast enough (tens of
    microseconds) to run on the event loop.
    """
    cursor = _sqlite_reader(engine)
    if cursor is not None:
        # Every row fetched: the statement finishes, and with it the read transaction
        # (one left open would hold its snapshot, and keep the WAL from being reset).
        rows = cursor.execute(WINDOW_SQL, (channel, account, customer)).fetchall()
        found = rows[0] if rows else None
    else:
        raw = engine.raw_connection()
        try:
            found = raw.cursor().execute(WINDOW_SQL, (channel, account, customer)).fetchone()
        finally:
            raw.close()
    if found is None:
        return None
    convert = _time_reader(engine.dialect)
    return WindowTimes(convert(found[0]), convert(found[1]))


async def window_times_pg(reads: AsyncReads, dialect: Dialect, *, channel: str, account: str,
                          customer: str) -> WindowTimes | None:
    """`window_times` on PostgreSQL, awaited on the event loop: lookups that arrive together
    are one statement (store/pg_reads.py, KeyedReads)."""
    found = await reads.keyed(_WINDOWS_PG).get((channel, account, customer))
    if found is None:
        return None
    convert = _time_reader(dialect)
    return WindowTimes(convert(found[0]), convert(found[1]))


# Many keys at once, the unique index probed for each; an absent key answers no row.
_WINDOWS_PG = ("SELECT k.i, c.last_inbound_at, c.last_outbound_at "
               "FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY "
               "AS k(channel, account, customer, i) "
               "JOIN conversations c ON c.channel = k.channel AND c.account = k.account "
               "AND c.customer = k.customer")


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
