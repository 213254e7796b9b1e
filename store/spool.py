"""On SQLite, webhook bodies wait in a spool of their own until they are applied.

SQLite lets one transaction at a time write to a database file. Were acknowledgements and the
applier to share the main database, every acknowledgement would wait for whatever batch the
applier is writing. So on SQLite the acknowledging writer appends bodies to a second file
beside the database (`<database>-spool`, itself WAL with full fsync: durable before the
200), and it is the only one that writes to it: the applier only reads it (and checkpoints
it, which takes no write lock), so neither ever waits for the other's lock.

The applier moves a body into `inbox_bodies` under its spool id and applies it in one
transaction of the main database, and only then reports it moved; the acknowledging writer
deletes what was reported (`delete_through`) between its appends. A body moved a second time
(a crash before the delete) meets its own id there and is neither stored nor applied again.
Ids only grow (AUTOINCREMENT), and start above every id in `inbox_bodies`.

PostgreSQL has no such limit: there, bodies go straight into `inbox_bodies` as `pending`.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from store import json_text, utc_text
from store.bulk import value_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  vendor TEXT NOT NULL, route TEXT NOT NULL, received_at TEXT NOT NULL,
  headers TEXT NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL,
  dedup_key TEXT, event_count INTEGER NOT NULL, detail TEXT
)"""
_APPENDED = ("vendor", "route", "received_at", "headers", "body", "state", "dedup_key",
             "event_count", "detail")
APPEND_COLUMNS = len(_APPENDED)
APPEND_ROWS = 512  # 4,608 parameters: well within SQLite's limit (32,766 since 3.32)
OLDEST_AFTER = ("SELECT id, vendor, route, received_at, headers, body, state, dedup_key, "
                "event_count, detail FROM spool WHERE id > ? ORDER BY id LIMIT ?")


@functools.lru_cache(maxsize=64)
def _append_sql(rows: int) -> str:
    return (f"INSERT INTO spool ({', '.join(_APPENDED)}) VALUES "
            + value_rows(APPEND_COLUMNS, rows))


@dataclass(frozen=True)
class Spooled:
    """A body in the spool, shaped like an `inbox_bodies` row."""

    id: int
    vendor: str
    route: str
    received_at: datetime
    headers_json: str  # as stored: the JSON text `inbox_bodies.headers` stores too
    body: bytes
    state: str
    dedup_key: str | None
    event_count: int
    detail: str | None

    def as_inbox_row(self, *, applied_at: datetime | None = None) -> dict[str, Any]:
        """The row for `inbox.move_in`, its headers still JSON text (not decoded only to be
        encoded again); `applied_at`: stored as applied then, not as spooled (`pending`)."""
        return {"id": self.id, "vendor": self.vendor, "route": self.route,
                "received_at": self.received_at, "headers": self.headers_json,
                "body": self.body,
                "state": self.state if applied_at is None else "applied",
                "dedup_key": self.dedup_key,
                "event_count": self.event_count, "detail": self.detail, "applied_at": applied_at}


def open_for(database_url: str, *, above: int) -> Spool | None:
    """The spool of this database (None where there is none), its ids above `above`."""
    path = path_for(database_url)
    if path is None:
        return None
    spool = Spool(path)
    spool.ids_above(above)
    return spool


def path_for(database_url: str) -> Path | None:
    """The spool beside a SQLite database file; None for PostgreSQL and in-memory SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}-spool")


class Spool:
    """The spool file; one connection per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connection().execute(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # an acknowledged body survives
            # Checkpoints run in the applier (`checkpoint`), never in an append.
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute("PRAGMA temp_store=MEMORY")  # as the main database's (store/db.py)
            # Builds with SECURE_DELETE (Debian's) zero every deleted body, so each page of
            # bodies the writer deletes once applied was written again, as zeros. Every body is
            # kept in `inbox_bodies`, so zeros here hide nothing; FAST zeroes only what is
            # written anyway (docs/performance.md, "Seventeenth pass": the server's CPU a
            # webhook ~3 % less).
            connection.execute("PRAGMA secure_delete=FAST")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Store bodies (rows as for `inbox_bodies`), durably, in one transaction.

        One multi-row INSERT in autocommit: a single call into SQLite, which lets go of the
        GIL once for the whole write and its fsync. (BEGIN, an executemany and COMMIT take
        it back once per row and per statement, and each time this thread may wait for the
        event loop to let go of it: measured at full load, a batch of ~13 bodies took 1.3 ms
        this way against 1.6 ms.)"""
        values = [value for r in rows for value in (
            r["vendor"], r["route"], utc_text.iso(r["received_at"]), json_text.dumps(r["headers"]),
            r["body"], r["state"], r["dedup_key"], r["event_count"], r["detail"])]
        connection = self._connection()
        if len(rows) <= APPEND_ROWS:
            connection.execute(_append_sql(len(rows)), values)
            return
        connection.execute("BEGIN IMMEDIATE")  # more than one statement takes: one transaction
        try:
            for start in range(0, len(rows), APPEND_ROWS):
                count = min(APPEND_ROWS, len(rows) - start)
                connection.execute(_append_sql(count), values[
                    start * APPEND_COLUMNS:(start + count) * APPEND_COLUMNS])
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def oldest_after(self, after_id: int, limit: int) -> list[Spooled]:
        """The oldest bodies past `after_id` (those moved but not yet forgotten)."""
        return [Spooled(id_, vendor, route, datetime.fromisoformat(at), headers,
                        body, state, key, count, detail)
                for id_, vendor, route, at, headers, body, state, key, count, detail
                in self._connection().execute(OLDEST_AFTER, (after_id, limit))]

    def delete_through(self, through_id: int) -> None:
        """Delete what has been moved into the main database (ids up to `through_id`): a
        write, so the acknowledging writer's to do (see the module's docstring)."""
        self._connection().execute("DELETE FROM spool WHERE id <= ?", (through_id,))

    def checkpoint(self) -> None:
        """Fold the log into the file, off the acknowledging writer's path. PASSIVE takes no
        write lock and waits for nobody: frames still being read or written stay for the
        next time."""
        self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def backlog(self, *, above: int = 0) -> tuple[int, datetime | None]:
        """How many bodies wait, and when the oldest of them was received. `above`: the
        highest id in `inbox_bodies`; a body moved there keeps its spool id, and stays here
        a little while until it is deleted (`delete_through`), so it is not counted."""
        count, oldest = self._connection().execute(
            "SELECT count(*), min(received_at) FROM spool WHERE id > ?", (above,)).fetchone()
        return count, datetime.fromisoformat(oldest) if oldest else None

    def ids_above(self, floor: int) -> None:
        """Make every id handed out from now on greater than `floor` (the highest id in
        `inbox_bodies`), so a spool id never names a body stored before."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = connection.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
            if row is None:
                connection.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('spool', ?)",
                                   (floor,))
            elif row[0] < floor:
                connection.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'spool'",
                                   (floor,))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()
