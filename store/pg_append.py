"""PostgreSQL: the webhook writer's one statement a batch, awaited on the event loop.

The ingest writer (receiver/ingest.py) stores a batch of bodies as one `INSERT ... SELECT
FROM unnest(...)` on a connection of its own outside any transaction: the statement commits
itself (synchronous_commit as the server has it: durable before it returns), so a batch is
one round trip. The connection is asyncpg's, awaited on the event loop: the batch goes out
from the loop and its answer comes back to it, with no thread between the requests and the
database (psycopg in a writer thread handed each batch to the thread and each answer back,
two more wake-ups on a machine whose cores are busy; docs/performance.md, "Fifteenth pass").

A statement that fails closes the connection; the caller stores that batch through a
session, and the next batch opens another connection. (Had it failed after its commit, the
bodies are stored twice; the copies apply nothing, as a vendor's retry would not.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from store import inbox, json_text
from store.asyncpg_url import asyncpg_params

_SQL = inbox.APPEND_PENDING.numbered_sql
_COLUMNS = inbox.APPEND_PENDING.columns
_HEADERS = _COLUMNS.index("headers")
_RECEIVED_AT = _COLUMNS.index("received_at")


def arrays(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The statement's parameters for `rows` (ingest's `_row` dicts), one list a column: the
    headers as JSON text, as the JSON column's converter writes them (json_text.dumps)."""
    columns: list[list[Any]] = [[row[name] for row in rows] for name in _COLUMNS]
    columns[_HEADERS] = [json_text.dumps(headers) for headers in columns[_HEADERS]]
    if any(at.tzinfo is None for at in columns[_RECEIVED_AT]):
        raise ValueError("naive datetime given to a UTC column")  # as store.db.UTCDateTime
    return columns


class PgAppend:
    """A connection of its own to the database at `url`, made when first needed and kept
    between batches. One batch at a time."""

    def __init__(self, url: URL) -> None:
        self._dsn, self._timeout = asyncpg_params(url)
        self._conn: asyncpg.Connection | None = None

    async def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store `rows`, committed when this returns."""
        params = arrays(rows)
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
        try:
            # asyncpg prepares the statement on its first use and keeps it per connection.
            await self._conn.execute(_SQL, *params)
        except BaseException:  # failed or cancelled: the connection's state is unknown
            conn, self._conn = self._conn, None
            conn.terminate()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=self._timeout)
            except Exception:  # gone already, or not answering: let go of it regardless
                conn.terminate()
