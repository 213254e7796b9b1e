"""Group commit for webhook bodies.

Every webhook request hands its body to `Ingestor.submit` and waits. One writer thread takes
whatever has queued up, stores and applies it all in one transaction, commits, and only then
releases the waiting requests: each callback is durable before its 200, yet a burst of
callbacks costs one commit, not one each.

Each body is stored in its own savepoint, so one body the database refuses cannot take the
others down with it. Replicas on PostgreSQL take turns writing batches (a transaction-scoped
advisory lock): two batches touching the same customers in a different order would otherwise
deadlock. Any deadlock left (with the sender's transactions) rolls back the whole batch and
retries it; a body is never answered 200 with its effects lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from receiver.apply import apply_body, apply_events
from receiver.errors import Unavailable
from receiver.events import Event
from receiver.settings import Settings
from store import db, inbox

logger = logging.getLogger(__name__)

MAX_BATCH = 512
ATTEMPTS = 4
INGEST_LOCK = 7_361_522_042


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


def _store_one(session: Session, item: Received, *, settings: Settings, now: datetime) -> str:
    if item.error_code is not None:
        inbox.add_quarantined(
            session, vendor=item.vendor, route=item.route, received_at=item.received_at,
            headers=item.headers, body=item.body, error=item.error_code,
            detail=item.error_detail or "",
        )
        return "quarantined"
    row = inbox.add_body(
        session, vendor=item.vendor, route=item.route, received_at=item.received_at,
        headers=item.headers, body=item.body,
        dedup_key=next((e.key for e in item.events if e.key), None), event_count=len(item.events),
    )
    if item.parser_failure is not None:
        row.state, row.detail = "failed", item.parser_failure
    else:
        row.state = apply_body(session, row, events=item.events, settings=settings, now=now)
    session.add(row)
    session.flush()
    return row.state


def store_batch(session: Session, items: list[Received], *, settings: Settings,
                now: datetime) -> list[str]:
    """Store and apply `items` in the session's transaction; the state of each.

    `unstorable`: the database refused the body as parsed (it is kept in the quarantine).
    """
    states = []
    for item in items:
        try:
            with session.begin_nested():
                states.append(_store_one(session, item, settings=settings, now=now))
        except Exception as exc:
            if db.is_transient(exc):
                raise
            logger.error("a webhook body could not be stored as parsed; quarantined",
                         exc_info=exc, extra={"action": "webhook_unstorable"})
            with session.begin_nested():
                inbox.add_quarantined(
                    session, vendor=item.vendor, route=item.route,
                    received_at=item.received_at, headers=item.headers, body=item.body,
                    error="unstorable", detail=f"{type(exc).__name__}"[:2000],
                )
            states.append("unstorable")
    return states


def store_batch_fast(session: Session, items: list[Received], *, settings: Settings,
                     now: datetime) -> list[str]:
    """The common case, in few statements: every body in one insert, effects applied, every
    state in one update. Any failure raises, and the caller redoes the batch with
    `store_batch`, which stores each body in its own savepoint."""
    for item in items:
        if item.error_code is not None:
            inbox.add_quarantined(
                session, vendor=item.vendor, route=item.route, received_at=item.received_at,
                headers=item.headers, body=item.body, error=item.error_code,
                detail=item.error_detail or "",
            )
    stored = [item for item in items if item.error_code is None]
    ids = inbox.add_bodies(session, [
        {"vendor": item.vendor, "route": item.route, "received_at": item.received_at,
         "headers": item.headers, "body": item.body, "state": "pending",
         "dedup_key": next((e.key for e in item.events if e.key), None),
         "event_count": len(item.events), "detail": None, "applied_at": None}
        for item in stored
    ]) if stored else []
    states: dict[int, str] = {}
    updates = []
    for item, body_id in zip(stored, ids, strict=True):
        if item.parser_failure is not None:
            state, applied_at, detail = "failed", None, item.parser_failure
        else:
            state = apply_events(session, events=item.events, inbox_body_id=body_id,
                                 received_at=item.received_at, settings=settings, now=now)
            applied_at, detail = now, None
        states[id(item)] = state
        updates.append((body_id, state, applied_at, detail))
    if updates:
        inbox.set_states(session, updates)
    return [states.get(id(item), "quarantined") for item in items]


class Ingestor:
    def __init__(self, engine: Engine, settings: Settings, clock: Callable[[], datetime], *,
                 on_commit: Callable[[], None] | None = None) -> None:
        self._engine = db.writer(engine)
        self._on_commit = on_commit
        self._settings = settings
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Received, asyncio.Future[str]] | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replywindow-ingest")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replywindow-ingest")

    async def stop(self) -> None:
        """Store what is queued, then stop; later submissions are refused (503)."""
        self._closing = True  # set and the sentinel queued with no await between: nothing
        if self._task is not None:  # can be queued after the sentinel
            self._queue.put_nowait(None)
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, item: Received, *, timeout: float) -> str:
        """Store (and apply) `item`; returns once it is committed. Raises Unavailable if that
        takes over `timeout` seconds: the body may still be stored, but it is not acknowledged
        (a vendor that retries is deduplicated; one that does not still finds it stored)."""
        if self._task is None or self._closing:
            raise Unavailable("The service is starting or stopping; try again.")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise Unavailable("The store is slow; the body may be kept but is not "
                              "acknowledged. Retry later.") from None

    async def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                batch: list[tuple[Received, asyncio.Future[str]]] = []
                entry = await self._queue.get()
                while entry is not None:
                    batch.append(entry)
                    if len(batch) >= MAX_BATCH or self._queue.empty():
                        break
                    entry = self._queue.get_nowait()
                stopping = entry is None
                if batch:
                    await self._write_batch(batch)
        finally:
            # Cancelled (the loop is going away): nobody may be left waiting for ever.
            while not self._queue.empty():
                entry = self._queue.get_nowait()
                if entry is not None and not entry[1].done():
                    entry[1].set_exception(Unavailable("The service is stopping; retry."))

    async def _write_batch(self, batch: list[tuple[Received, asyncio.Future[str]]]) -> None:
        items = [item for item, _ in batch]
        loop = asyncio.get_running_loop()
        try:
            states = await asyncio.shield(loop.run_in_executor(self._executor, self._write, items))
        except Exception as exc:
            logger.error("could not store webhook bodies", exc_info=exc,
                         extra={"action": "webhook_store_failed", "count": len(items)})
            for _, future in batch:
                if not future.done():
                    future.set_exception(Unavailable(
                        "The store is unavailable; the body was not kept. Retry later."))
            return
        for (_, future), state in zip(batch, states, strict=True):
            if not future.done():
                future.set_result(state)
        if self._on_commit is not None:
            self._on_commit()

    def _write(self, items: list[Received]) -> list[str]:
        try:
            return self._transaction(items, store_batch_fast)
        except Exception as exc:
            if db.is_transient(exc):
                raise  # retried already; answered 503, the vendor retries
            logger.warning("a webhook batch failed as a whole; storing its bodies one by one",
                           extra={"action": "webhook_batch_careful", "count": len(items),
                                  "error": type(exc).__name__})
            return self._transaction(items, store_batch)

    def _transaction(self, items: list[Received],
                     store: Callable[..., list[str]]) -> list[str]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with Session(self._engine) as session, session.begin():
                    db.serialize_writers(session, INGEST_LOCK)
                    return store(session, items, settings=self._settings, now=self._clock())
            except Exception as exc:
                if not db.is_transient(exc) or attempt == ATTEMPTS:
                    raise
                logger.warning("webhook batch met a deadlock or a lock; retrying",
                               extra={"action": "webhook_batch_retry", "attempt": attempt})
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")
