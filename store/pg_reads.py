"""Point reads on PostgreSQL from the event loop: a few psycopg async connections, in
autocommit, each lent to one read at a time.

The window lookup is the bots' hot read. Through SQLAlchemy it went to a worker thread, took
a pooled connection (and its `pool_pre_ping`, a round trip of its own) and built a result:
measured, ~650 us of the server's CPU a lookup and 1,600 lookups/s at most, against ~80 us on
SQLite. Here a lookup is one round trip, awaited on the loop, on a statement prepared on the
server: 7,070 lookups/s, ~140 us of CPU a lookup (measured on the Xeon, before the cursor
was kept; ~10,000/s on the EPYC since).

A connection that broke while it waited (the server restarted) is noticed when a read fails
on it: the read is tried once more on a fresh connection (reads can be repeated), and a
read that fails on a fresh one raises `store.db.Unreachable`.

Imported only on PostgreSQL: psycopg costs a SQLite process ~10 MB.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from store.db import Unreachable

CONNECT_TIMEOUT = 5


class AsyncReads:
    """At most `size` connections, made when first needed; a read waits for a free one."""

    def __init__(self, url: URL, *, size: int = 4) -> None:
        # The libpq form of the engine's URL (its driver name dropped).
        self._conninfo = url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        # Every open connection, and the one cursor each reuses.
        self._cursors: dict[psycopg.AsyncConnection[Any], psycopg.AsyncCursor[Any]] = {}

    async def one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of `sql` (psycopg's %s placeholders), or None."""
        try:
            return await self._one(sql, params)
        except psycopg.OperationalError as exc:
            raise Unreachable(str(exc)) from exc

    async def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        async with self._slots:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._connect()
            try:
                row = await self._read(connection, sql, params)
            except psycopg.OperationalError:
                await self._discard(connection)
                if not reused:
                    raise
                connection = await self._connect()  # the server may have restarted since
                try:
                    row = await self._read(connection, sql, params)
                except BaseException:
                    await self._discard(connection)
                    raise
            except BaseException:
                await self._discard(connection)  # cancelled mid-read: its state is unknown
                raise
            self._idle.append(connection)
            return row

    async def close(self) -> None:
        connections, self._cursors, self._idle = list(self._cursors), {}, []
        for connection in connections:
            await connection.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        self._cursors[connection] = connection.cursor()
        return connection

    async def _discard(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._cursors.pop(connection, None)
        try:
            await connection.close()
        except psycopg.Error:
            pass

    async def _read(self, connection: psycopg.AsyncConnection[Any], sql: str,
                    params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        # The connection's one cursor, reused, and the statement prepared from its first use
        # (with the lookup's leaner answer, receiver/raw_response.py: 8,600-8,900 -> 9,600-9,850
        # lookups/s).
        cursor = self._cursors[connection]
        await cursor.execute(sql, params, prepare=True)
        return await cursor.fetchone()
