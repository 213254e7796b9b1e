"""PostgreSQL: the webhook writer's one statement a batch.

The ingest writer (receiver/ingest.py) keeps a connection of its own, in autocommit, and
stores a batch of bodies as one `INSERT ... SELECT FROM unnest(...)`: the statement commits
itself (synchronous_commit as the server has it: durable before it returns), so a batch is
one round trip where a pooled session made five (the pool's ping, BEGIN, COPY, the end of
the COPY, COMMIT), and the writer takes the GIL back from the event loop once, not five
times (docs/performance.md, "Ninth pass"). A connection that fails is closed; the caller
stores that batch through a session, and the next batch opens another connection. (Had it
failed after its commit, the bodies are stored twice; the copies apply nothing, as a vendor's
retry would not.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from store import inbox


class PgAppend:
    """A connection of its own to `engine`'s database, kept between batches. One thread at
    a time (the ingest writer's)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            pooled = self._engine.raw_connection()  # the engine's connect arguments
            conn = pooled.driver_connection
            pooled.detach()  # ours, not the pool's, until it fails or we close it
            conn.autocommit = True
            self._conn = conn
        return self._conn

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store `rows` (ingest's `_row` dicts), committed when this returns."""
        arrays = inbox.APPEND_PENDING.arrays(self._engine.dialect, rows)
        conn = self._connection()
        try:
            conn.execute(inbox.APPEND_PENDING.unnest_sql, arrays, prepare=True)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
