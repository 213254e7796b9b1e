"""Engines and the column types every table shares."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, create_engine, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from store import json_text

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _as_is(value: Any) -> Any:
    return value


# CPython's sqlite3 binds an int, float or str as it is, but sends every bytes and None
# parameter through its adapter protocol, where finding no adapter costs two failed attribute
# lookups, each an AttributeError built and dropped: ~3,300 instructions a parameter, 2.9 %
# of the applier's instructions (callgrind; docs/performance.md, "Sixteenth pass"). With an
# adapter registered each is one dictionary hit, and goes to SQLite as it came (the adapters
# are the process's; these change no value).
sqlite3.register_adapter(bytes, bytes)  # bytes(b) is b itself
sqlite3.register_adapter(type(None), _as_is)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL.

    SQLite keeps no zone, so values are stored as naive UTC there; naive input is refused
    so that a local time can never be taken for UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite gets WAL, full fsync and real transactions (see below)."""
    # hide_parameters: an SQL error (or the engine's log) never shows bound values, which are
    # phone numbers and message bodies.
    kwargs.setdefault("hide_parameters", True)
    kwargs.setdefault("json_serializer", json_text.dumps)
    if not is_sqlite(url):
        kwargs["connect_args"] = {"connect_timeout": 5, **kwargs.get("connect_args", {})}
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)
    kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30,
                              **kwargs.get("connect_args", {})}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's legacy transaction handling breaks SAVEPOINT; we issue BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a committed callback survives power loss
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # A checkpoint copies every page changed since the last one into the database file;
        # the applier's batches change the same index pages again and again, so copying every
        # 16,000 pages (~64 MB of log) rather than SQLite's 1,000 copies each of them fewer
        # times (docs/performance.md: "Sixth pass", 1,000 -> 4,000; "Seventeenth pass",
        # 4,000 -> 16,000: the applier's CPU a body -8 % as the database grows past 300,000
        # bodies, and the sustained 0.35x run kept up where it had fallen behind).
        cur.execute("PRAGMA wal_autocheckpoint=16000")
        # The applier's multi-row statements inside its transactions keep statement journals;
        # on disk (SQLite's default) they cost it ~1.3 temp-file writes a body, ~10 % of its
        # CPU (docs/performance.md, "Fourteenth pass"). Each lives for one statement.
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front so a read-then-write transaction never
        # fails with SQLITE_BUSY when another process wrote in between.
        if conn.get_execution_options().get("sqlite_immediate", False):
            _begin_immediate(conn.connection.dbapi_connection)
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


LOCK_WAIT_SECONDS = 30.0
LOCK_POLL_SECONDS = (0.0002, 0.002)  # first and longest pause between tries


def _begin_immediate(dbapi_conn: Any) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in pauses of at most 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between tries, so a writer
    can sleep long after the lock came free: with the applier in another process, webhook
    acknowledgements would wait tens of milliseconds for nothing."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        pause = LOCK_POLL_SECONDS[0]
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LOCK_POLL_SECONDS[1])
    finally:
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


_WRITER = "_replywindow_writer"


def writer(engine: Engine) -> Engine:
    """The same engine, for transactions that will write. Made once per engine and kept on it:
    `execution_options` builds a new engine object each call, and the applier asks for it
    every batch (py-spy at full rate, small batches: 3.4 % of its samples)."""
    made: Engine | None = engine.__dict__.get(_WRITER)
    if made is None:
        made = engine.__dict__[_WRITER] = engine.execution_options(sqlite_immediate=True)
    return made


# Deadlock, serialization failure, lock timeout: the work is fine, the timing was not.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


class Unreachable(Exception):
    """The database could not be reached (raised where a driver's own error would otherwise
    reach the HTTP layer: store/pg_reads.py)."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the whole transaction may succeed."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in TRANSIENT_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)


def serialize_writers(session: Any, lock_id: int) -> None:
    """Make concurrent transactions that call this with `lock_id` take turns (PostgreSQL; on
    SQLite, BEGIN IMMEDIATE already does). Released at commit or rollback."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})


def retrying(work: Callable[[], T], *, attempts: int, what: str) -> T:
    """Run `work`, one whole transaction, again after a deadlock or a lock timeout."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts:
                raise
            logger.warning("%s met a deadlock or a lock; retrying", what,
                           extra={"action": "transaction_retry", "attempt": attempt})
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
