"""Point reads on PostgreSQL from the event loop: a few psycopg async connections, in
autocommit, each lent to one read at a time.

The window lookup is the bots' hot read. Through SQLAlchemy it went to a worker thread, took
a pooled connection (and its `pool_pre_ping`, a round trip of its own) and built a result:
measured, ~650 us of the server's CPU a lookup and 1,600 lookups/s at most, against ~80 us on
SQLite. Here a lookup is one round trip, awaited on the loop, on a statement prepared on the
server: 7,070 lookups/s, ~140 us of CPU a lookup (measured on the Xeon, before the cursor
was kept; ~10,000/s on the EPYC since). Lookups that arrive together are asked in one
statement (`KeyedReads`): on the EPYC, 10,500-11,400 -> 15,200-17,800 lookups/s.

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
        self._size = size
        self._slots = asyncio.Semaphore(size)
        self._keyed: dict[str, KeyedReads] = {}
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        # Every open connection, and the one cursor each reuses.
        self._cursors: dict[psycopg.AsyncConnection[Any], psycopg.AsyncCursor[Any]] = {}

    async def rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Every row of `sql` (psycopg's %s placeholders)."""
        try:
            return await self._rows(sql, params)
        except psycopg.OperationalError as exc:
            raise Unreachable(str(exc)) from exc

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with self._slots:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._connect()
            try:
                rows = await self._read(connection, sql, params)
            except psycopg.OperationalError:
                await self._discard(connection)
                if not reused:
                    raise
                connection = await self._connect()  # the server may have restarted since
                try:
                    rows = await self._read(connection, sql, params)
                except BaseException:
                    await self._discard(connection)
                    raise
            except BaseException:
                await self._discard(connection)  # cancelled mid-read: its state is unknown
                raise
            self._idle.append(connection)
            return rows

    def keyed(self, sql: str) -> KeyedReads:
        """The `KeyedReads` of `sql` on these connections: one per statement, made when first
        asked for."""
        keyed = self._keyed.get(sql)
        if keyed is None:
            keyed = self._keyed[sql] = KeyedReads(self, sql, size=self._size)
        return keyed

    async def close(self) -> None:
        keyed, self._keyed = list(self._keyed.values()), {}
        for reads in keyed:
            await reads.close()
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
                    params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # The connection's one cursor, reused, and the statement prepared from its first use
        # (with the lookup's leaner answer, receiver/raw_response.py: 8,600-8,900 -> 9,600-9,850
        # lookups/s).
        cursor = self._cursors[connection]
        await cursor.execute(sql, params, prepare=True)
        return await cursor.fetchall()


class KeyedReads:
    """Point reads by key that arrive together, asked in one statement.

    A read waits in a queue; at the end of the event loop's turn every read queued in it goes
    to the server as one statement, as many statements at once as `reads` has connections,
    and what queues while they are all busy goes as the next. Under load a round trip then
    answers many lookups (its cost, mostly the two processes' system calls, is paid once for
    all), and a lone read costs one round trip as before.

    `sql` takes one array per part of the key (psycopg's %s placeholders) and answers, for
    each key found, its 1-based position among them (WITH ORDINALITY) and then its columns.
    """

    def __init__(self, reads: AsyncReads, sql: str, *, size: int, limit: int = 64) -> None:
        self._reads = reads
        self._sql = sql
        self._size = size  # statements in flight at most: `reads`' connections
        self._limit = limit  # keys per statement at most
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[tuple[Any, ...] | None]]] = []
        self._running = 0
        self._scheduled = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The columns found for `key`, or None. Raises what the read raised."""
        if self._closed:
            raise RuntimeError("these reads are closed")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, ...] | None] = loop.create_future()
        self._queue.append((key, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)  # after the reads this turn of the loop brings
        return await answer

    def _start(self) -> None:
        self._scheduled = False
        while not self._closed and self._queue and self._running < self._size:
            batch, self._queue = self._queue[:self._limit], self._queue[self._limit:]
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._ask(batch))
            self._tasks.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self._tasks.discard)

    async def _ask(self, batch: list[tuple[tuple[Any, ...],
                                           asyncio.Future[tuple[Any, ...] | None]]]) -> None:
        try:
            waiting = [(key, answer) for key, answer in batch if not answer.done()]
            if waiting:  # all of them may have been given up on (cancelled) meanwhile
                arrays = tuple(list(part) for part in zip(*(key for key, _ in waiting)))
                rows = await self._reads.rows(self._sql, arrays)
                found = {row[0]: tuple(row[1:]) for row in rows}
                for position, (_, answer) in enumerate(waiting, 1):
                    if not answer.done():
                        answer.set_result(found.get(position))
        except Exception as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
        finally:
            for _, answer in batch:  # cancelled itself (the app stopping): none left waiting
                if not answer.done():
                    answer.cancel()
            self._running -= 1
            if self._queue:
                self._start()

    async def close(self) -> None:
        """Stop the statements in flight and start no more (every reader still waiting is
        cancelled)."""
        self._closed = True
        queued, self._queue = self._queue, []
        for _, answer in queued:
            answer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
