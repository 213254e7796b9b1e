"""Group commit for webhook bodies.

Every webhook request hands its parsed body to `Ingestor.submit` and waits. A writer takes
whatever has queued up, stores it all as `pending` in one insert, commits, and only then
releases the waiting requests: each callback is durable before its 200, yet a burst of
callbacks costs one commit, not one each. On SQLite the writer is a thread and the insert goes
to the spool (store/spool.py). On PostgreSQL it is one statement on a connection of the
writer's own, outside any transaction (store/pg_append.py): one round trip, awaited on the
event loop itself, one batch at a time (a second writer that gathered while the first waited
cost more CPU than it saved: docs/performance.md, "Ninth pass"). Its effects are applied
afterwards, from the stored rows, by the applier (receiver/applier.py): nothing but an insert
and a commit stands between a vendor and its acknowledgement.

If the batch's insert fails, it is done again in a session (in the writer thread), and if
that fails too each body is stored in its own savepoint, so one body the database refuses is
quarantined without taking the others down with it. Bodies that could not be read go to the
quarantine the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session

from receiver.errors import Unavailable
from receiver.events import Event
from store import db, inbox
from store.spool import Spool
from store.writer_threads import WriterThreads

if TYPE_CHECKING:
    from store.pg_append import PgAppend

logger = logging.getLogger(__name__)

MAX_BATCH = 512
ATTEMPTS = 4
WATCH_SECONDS = 0.05


@dataclass
class Received:
    vendor: str
    route: str
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    events: list[Event] = field(default_factory=list)
    # Set when the body could not be read: it goes to the quarantine instead.
    error_code: str | None = None
    error_detail: str | None = None
    # Set when our parser broke on it: stored as `failed`, for `inbox replay` once mended.
    parser_failure: str | None = None


def _quarantine(session: Session, item: Received, *, error: str, detail: str) -> None:
    inbox.add_quarantined(session, vendor=item.vendor, route=item.route,
                          received_at=item.received_at, headers=item.headers, body=item.body,
                          error=error, detail=detail)


def _row(item: Received) -> dict[str, Any]:
    failed = item.parser_failure is not None
    return {"vendor": item.vendor, "route": item.route, "received_at": item.received_at,
            "headers": item.headers, "body": item.body,
            "state": "failed" if failed else "pending",
            "dedup_key": next((e.key for e in item.events if e.key), None),
            "event_count": len(item.events), "detail": item.parser_failure}


def store_batch_fast(session: Session, items: list[Received]) -> list[str]:
    """The common case: every readable body in one insert, `pending` for the applier. Any
    failure raises, and the caller redoes the batch with `store_batch`."""
    rows = []
    for item in items:
        if item.error_code is not None:
            _quarantine(session, item, error=item.error_code, detail=item.error_detail or "")
        else:
            rows.append(_row(item))
    if rows:
        inbox.add_pending(session, rows)
    return _states(items)


def _states(items: list[Received]) -> list[str]:
    return ["quarantined" if item.error_code is not None else
            "failed" if item.parser_failure is not None else "pending" for item in items]


def store_batch(session: Session, items: list[Received]) -> list[str]:
    """Body by body, each in its own savepoint: one the database refuses is quarantined as
    `unstorable` and answered 400, and the others are stored all the same."""
    states = []
    for item in items:
        try:
            with session.begin_nested():
                states.extend(store_batch_fast(session, [item]))
        except Exception as exc:
            if db.is_transient(exc):
                raise
            logger.error("a webhook body could not be stored as parsed; quarantined",
                         exc_info=exc, extra={"action": "webhook_unstorable"})
            with session.begin_nested():
                _quarantine(session, item, error="unstorable", detail=type(exc).__name__)
            states.append("unstorable")
    return states


class Ingestor:
    """The event loop queues bodies for the writer (on PostgreSQL a task of its own, else the
    writer threads of store/writer_threads.py) and, once a batch is committed, answers its
    requests."""

    def __init__(self, engine: Engine, *, spool: Spool | None = None,
                 on_commit: Callable[[], None] | None = None) -> None:
        self._engine = db.writer(engine)
        self._spool = spool
        self._append: PgAppend | None = None
        if engine.dialect.name == "postgresql":
            from store.pg_append import PgAppend  # asyncpg: only where it is used
            self._append = PgAppend(engine.url)
        # PostgreSQL: readable bodies waiting for the next statement, and the task that
        # writes them (running while there are any).
        self._queue: list[tuple[Received, asyncio.Future[str]]] = []
        self._appending: asyncio.Task[None] | None = None
        self._on_commit = on_commit
        self._writers: WriterThreads[tuple[Received, asyncio.Future[str]]] = WriterThreads(
            self._store, name="replywindow-ingest", max_batch=MAX_BATCH)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._deadlines: dict[float, deque[tuple[float, asyncio.Future[str]]]] = {}
        self._closing = False
        # Spool ids the applier has moved into the main database, and those deleted so far.
        self._moved = self._deleted = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._writers.start()
        self._watchdog = asyncio.create_task(self._watch(), name="replywindow-ingest-deadlines")

    async def stop(self) -> None:
        """Store what is queued, then stop; later submissions are refused (503)."""
        self._closing = True
        if self._appending is not None:  # it writes everything queued before it ends
            await asyncio.wait([self._appending])
        if self._append is not None:
            await self._append.close()
        for thread in self._writers.stop():  # each drains the queue before it ends
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(self._delete_moved)
        # The writers' last answers were handed to the loop before they ended: let them run.
        await asyncio.sleep(0)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._loop = None

    async def submit(self, item: Received, *, timeout: float) -> str:
        """Store `item`; returns its stored state once it is committed. Raises Unavailable if that
        takes over `timeout` seconds: the body may still be stored, but it is not acknowledged
        (a vendor that retries is deduplicated; one that does not still finds it stored)."""
        loop = self._loop
        if loop is None or self._closing:
            raise Unavailable("The service is starting or stopping; try again.")
        future: asyncio.Future[str] = loop.create_future()
        if self._append is not None and item.error_code is None:
            self._queue.append((item, future))
            if self._appending is None:
                self._appending = loop.create_task(self._append_queued(self._append),
                                                   name="replywindow-ingest-append")
        else:
            self._writers.put(((item, future),))
        # No timer per request: one watchdog goes through the deadlines, oldest first.
        self._deadlines.setdefault(timeout, deque()).append((loop.time() + timeout, future))
        return await future

    async def _append_queued(self, append: PgAppend) -> None:
        """PostgreSQL, on the loop: what queued up, one statement a batch, until nothing is
        left; a batch whose statement failed goes to the writer thread (the long way)."""
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await append.append([_row(item) for item, _ in batch])
                except Exception as exc:  # a broken connection, a body refused
                    logger.warning("a webhook batch's one statement failed; storing it again "
                                   "through a session", extra={
                                       "action": "webhook_append_failed", "count": len(batch),
                                       "error": type(exc).__name__})
                    self._writers.put(batch)
                    continue
                except BaseException:  # cancelled (the loop is closing): all still stored,
                    rest, self._queue = self._queue, []  # those queued behind it too
                    self._writers.put(batch + rest)
                    raise
                self._answer(batch, _states([item for item, _ in batch]))
        finally:
            self._appending = None

    def moved(self, through_id: int) -> None:
        """The applier has moved the spooled bodies up to `through_id` into the main database:
        the writer deletes them from the spool after its next batch (store/spool.py: the
        spool has one writer, so the applier never waits for its lock, nor it for the
        applier's). Any thread."""
        self._moved = max(self._moved, through_id)

    async def _watch(self) -> None:
        """Fail every submission still waiting past its deadline, every WATCH_SECONDS."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = loop.time()
            for waiting in self._deadlines.values():  # each in deadline order (same timeout)
                while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
                    _, future = waiting.popleft()
                    if not future.done():
                        future.set_exception(Unavailable(
                            "The store is slow; the body may be kept but is not "
                            "acknowledged. Retry later."))

    def _store(self, batch: list[tuple[Received, asyncio.Future[str]]]) -> None:
        """In a writer thread: store a batch, and have the loop answer its requests."""
        items = [item for item, _ in batch]
        try:
            outcome: list[str] | Exception = self._write(items)
        except Exception as exc:
            logger.error("could not store webhook bodies", exc_info=exc,
                         extra={"action": "webhook_store_failed", "count": len(items)})
            outcome = exc
        try:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._answer, batch, outcome)
        except RuntimeError:  # the loop is gone: nobody is waiting any more
            pass
        self._delete_moved()

    def _delete_moved(self) -> None:
        """In a writer thread, once its batch is answered: delete from the spool what the
        applier has moved. A failure is logged; the bodies are deleted next time (and one
        moved again after a restart is not stored twice, store/spool.py)."""
        through = self._moved
        if self._spool is None or through <= self._deleted:
            return
        try:
            self._spool.delete_through(through)
            self._deleted = through
        except Exception as exc:
            logger.warning("could not delete applied bodies from the spool; will retry",
                           exc_info=exc, extra={"action": "spool_delete_failed"})

    def _answer(self, batch: list[tuple[Received, asyncio.Future[str]]],
                outcome: list[str] | Exception) -> None:
        """On the loop: release the batch's requests with their stored states."""
        if isinstance(outcome, Exception):
            for _, future in batch:
                if not future.done():
                    future.set_exception(Unavailable(
                        "The store is unavailable; the body was not kept. Retry later."))
            return
        for (_, future), state in zip(batch, outcome, strict=True):
            if not future.done():
                future.set_result(state)
        if self._on_commit is not None:
            self._on_commit()

    def _write(self, items: list[Received]) -> list[str]:
        if self._spool is not None:
            return self._write_spool(self._spool, items)
        try:
            return self._transaction(items, store_batch_fast)
        except Exception as exc:
            if db.is_transient(exc):
                raise  # retried already; answered 503, the vendor retries
            logger.warning("a webhook batch failed as a whole; storing its bodies one by one",
                           extra={"action": "webhook_batch_careful", "count": len(items),
                                  "error": type(exc).__name__})
            return self._transaction(items, store_batch)

    def _write_spool(self, spool: Spool, items: list[Received]) -> list[str]:
        """SQLite: readable bodies to the spool (store/spool.py), the rest to the quarantine."""
        unreadable = [item for item in items if item.error_code is not None]
        if unreadable:
            self._transaction(unreadable, store_batch_fast)
        readable = [_row(item) for item in items if item.error_code is None]
        if readable:
            spool.append(readable)
        return _states(items)

    def _transaction(self, items: list[Received],
                     store: Callable[[Session, list[Received]], list[str]]) -> list[str]:
        def work() -> list[str]:
            with Session(self._engine) as session, session.begin():
                return store(session, items)
        return db.retrying(work, attempts=ATTEMPTS, what="a webhook batch")
