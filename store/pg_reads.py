"""Point reads on PostgreSQL from the event loop: a few asyncpg connections, each lent to
one read at a time.

The window lookup is the bots' hot read. Through SQLAlchemy it went to a worker thread, took
a pooled connection (and its `pool_pre_ping`, a round trip of its own) and built a result:
measured, ~650 us of the server's CPU a lookup and 1,600 lookups/s at most, against ~80 us on
SQLite. Awaited on the loop through psycopg's async connections, on a statement prepared on
the server: ~140 us a lookup; lookups that arrive together asked in one statement
(`KeyedReads`): on the EPYC, 10,500-11,400 -> 15,200-17,800 lookups/s. asyncpg instead of
psycopg (its protocol in C, answers handed over from the socket's callback, statements
prepared and cached per connection): ~40 us less CPU a statement, and the lookups' p99 at
half rate 0.0-0.8 ms over the bare endpoint's at that pace, against 0.8-1.4 ms
(docs/performance.md, "Thirteenth pass").

The connections are asyncpg's, made from the engine's URL as store/asyncpg_url.py reads it
for asyncpg.

A connection that broke while it waited (the server restarted) is noticed when a read fails
on it: the read is tried once more on a fresh connection (reads can be repeated), and a
read that fails on a fresh one raises `store.db.Unreachable`.

Imported only on PostgreSQL: a driver costs a SQLite process memory for nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from store.asyncpg_url import asyncpg_params
from store.db import Unreachable

# The lookup's plan made once per connection, not for every statement. PostgreSQL plans a
# prepared statement afresh each time while a plan for the given array lengths looks cheaper
# than one for any ("custom"): ~40 us a statement idle (twelfth pass); at half rate the
# lookups' p50 ~0.1 ms higher and their p99 0.15-0.94 ms further above the bare endpoint's
# in five alternated pairs (docs/performance.md, "Eighteenth pass"). A plan kept is made for
# the table as it was: on an empty one, a hash join over a scan of the whole table. It does
# not outlast the table's growth: autovacuum analyzes the table once 50 rows and then each
# 10 % more have come, and an ANALYZE makes every session plan its statements on the table
# again (a test holds PostgreSQL to that); asyncpg also prepares each statement anew after
# REPLAN_SECONDS.
_SETTINGS = {"plan_cache_mode": "force_generic_plan"}
REPLAN_SECONDS = 300

# What says the connection, not the statement, failed: the socket, PostgreSQL's class 08
# (connection exception) and 57 (operator intervention: the server shutting down, the backend
# terminated).
_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)


class _Lost(Exception):
    """A read's connection is gone (the cause chained)."""


class AsyncReads:
    """At most `size` connections, made when first needed; a read waits for a free one."""

    def __init__(self, url: URL, *, size: int = 4) -> None:
        self._dsn, self._timeout = asyncpg_params(url)
        self._size = size
        self._slots = asyncio.Semaphore(size)
        self._keyed: dict[str, KeyedReads] = {}
        self._idle: list[asyncpg.Connection] = []
        self._open: set[asyncpg.Connection] = set()

    async def rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Every row of `sql` ($1, $2, ... for `params`), each indexable like a tuple."""
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            if connection is not None and connection.is_closed():
                self._discard(connection)
                connection = None
            try:
                rows = await self._read(connection, sql, params)
            except _Lost as lost:
                if connection is None:  # already a fresh connection
                    raise Unreachable(str(lost.__cause__)) from lost.__cause__
                try:  # the server may have restarted since this one was made
                    rows = await self._read(None, sql, params)
                except _Lost as again:
                    raise Unreachable(str(again.__cause__)) from again.__cause__
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
        connections, self._open, self._idle = list(self._open), set(), []
        for connection in connections:
            try:
                await connection.close(timeout=self._timeout)
            except Exception:  # gone already, or not answering: let go of it regardless
                connection.terminate()

    async def _read(self, connection: asyncpg.Connection | None, sql: str,
                    params: tuple[Any, ...]) -> list[Any]:
        """`sql` on `connection` (None: a new one), which goes back to the idle ones after."""
        if connection is None:
            try:
                connection = await asyncpg.connect(
                    self._dsn, timeout=self._timeout, server_settings=_SETTINGS,
                    max_cached_statement_lifetime=REPLAN_SECONDS)
            except Exception as exc:  # refused, timed out, authentication, no such database
                raise _Lost() from exc
            self._open.add(connection)
        try:
            # asyncpg prepares the statement on its first use and keeps it per connection.
            rows = await connection.fetch(sql, *params)
        except Exception as exc:
            if isinstance(exc, _LOST) or connection.is_closed():
                self._discard(connection)
                raise _Lost() from exc
            self._idle.append(connection)  # the statement failed; the connection is as it was
            raise
        except BaseException:
            self._discard(connection)  # cancelled mid-read: its state is unknown
            raise
        self._idle.append(connection)
        return rows

    def _discard(self, connection: asyncpg.Connection) -> None:
        self._open.discard(connection)
        connection.terminate()


class KeyedReads:
    """Point reads by key that arrive together, asked in one statement.

    A read waits in a queue; at the end of the event loop's turn every read queued in it goes
    to the server as one statement, as many statements at once as `reads` has connections,
    and what queues while they are all busy goes as the next. Under load a round trip then
    answers many lookups (its cost, mostly the two processes' system calls, is paid once for
    all), and a lone read costs one round trip as before.

    `sql` takes one array per part of the key ($1, $2, ...) and answers, for each key found,
    its 1-based position among them (WITH ORDINALITY) and then its columns.
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
