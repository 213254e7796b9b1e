"""The applier: stored webhook bodies (`pending`) become their effects in the store.

A webhook is acknowledged once its raw body is committed (receiver/ingest.py); this reads
the pending bodies in arrival order, parses them again with the same pure parsers, applies
their events and marks each body with its outcome, all in one transaction per batch. Every
event's key is claimed before it is applied, and a body's state changes in the same
transaction as its effects, so a crash, a retry or two appliers at once apply nothing twice.

Appliers on every replica take turns (a transaction-scoped advisory lock on PostgreSQL; BEGIN
IMMEDIATE on SQLite). `Applier` runs it on a thread of the server; receiver/applier_process.py
runs the same loop in a child process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from receiver.apply import apply_guarded, apply_many, failure_detail
from receiver.events import Event
from receiver.parsers import Parser, parsers
from receiver.pending_cursor import PendingCursor, Rescan
from receiver.settings import Settings
from store import db, inbox
from store.spool import Spool

logger = logging.getLogger(__name__)

# Bodies per transaction. SQLite: short, as sends wait for its write lock. PostgreSQL takes
# writers side by side, and there a batch is a dozen round trips to the server whatever its
# size: with 128 the applier spent ~64 % of its time waiting for them and fell behind at full
# load (docs/performance.md, "Sixth pass").
BATCH = 128
PG_BATCH = 512
ATTEMPTS = 4
APPLY_LOCK = 7_361_522_042
# Bodies stored by another replica (or left by a crash) are found by looking this often.
POLL_SECONDS = 0.5
FORGET_SECONDS = 0.5  # how often, while busy, moved bodies are let go of in the spool
Update = tuple[int, str, datetime | None, str | None]


def _parse(row: Any, read: dict[tuple[str, str], Parser]) -> list[Event] | str:
    """The stored body's events, or why it no longer parses (a key rotated since, say)."""
    try:
        return read[(row.vendor, row.route)](row.body)
    except Exception as exc:
        logger.error("a stored body no longer parses; kept as failed", exc_info=exc,
                     extra={"action": "webhook_apply_failed", "inbox_body_id": row.id})
        return failure_detail(exc)


def _apply_each(session: Session, parsed: list[tuple[Any, list[Event]]], *,
                settings: Settings, now: datetime) -> list[Update]:
    """Body by body, each in its own savepoint: one that fails is marked `failed`."""
    updates: list[Update] = []
    for row, events in parsed:
        state, failure = apply_guarded(session, inbox_body_id=row.id,
                                       received_at=row.received_at, events=events,
                                       settings=settings, now=now)
        updates.append((row.id, state, None if failure else now, failure))
    return updates


def _apply_parsed(session: Session, parsed: list[tuple[Any, list[Event] | str]], *,
                  settings: Settings, now: datetime, careful: bool) -> list[Update]:
    """Apply parsed bodies (or mark those that would not parse); their states."""
    updates: list[Update] = [(row.id, "failed", None, events) for row, events in parsed
                             if isinstance(events, str)]
    todo = [(row, events) for row, events in parsed if not isinstance(events, str)]
    if careful:
        return updates + _apply_each(session, todo, settings=settings, now=now)
    states = apply_many(session, [(row.id, row.received_at, events) for row, events in todo],
                        settings=settings, now=now)
    return updates + [(row.id, state, now, None)
                      for (row, _), state in zip(todo, states, strict=True)]


def _fast_then_careful(work: Callable[[bool], int]) -> int:
    """First all at once, with no savepoints; should anything fail, the batch is rolled back
    and done again body by body, each in its own savepoint, so one bad body is marked
    `failed` (for `inbox replay` once mended) and the others are applied all the same."""
    try:
        return db.retrying(lambda: work(False), attempts=ATTEMPTS, what="applying a batch")
    except Exception as exc:
        if db.is_transient(exc):
            raise
        logger.warning("a batch failed as a whole; applying its bodies one by one",
                       extra={"action": "webhook_apply_careful", "error": type(exc).__name__})
        return db.retrying(lambda: work(True), attempts=ATTEMPTS, what="applying a batch")


def _read_pending(session: Session, cursor: PendingCursor | None, *, limit: int,
                  now: float) -> tuple[list[Any], bool]:
    """The next bodies to apply, and whether the read stopped at `limit` (there may be
    more): by state on SQLite (`cursor` None), past the cursor on PostgreSQL."""
    if cursor is None:
        rows = inbox.pending(session, limit=limit)
        return rows, len(rows) == limit
    read = cursor.next_read(now)
    if isinstance(read, Rescan):
        newest = inbox.max_id(session)
        rows = inbox.pending(session, limit=limit, after=read.after_id)
        full = len(rows) == limit
        cursor.rescanned([row.id for row in rows], newest=newest, full=full, now=now)
        return rows, full
    found = inbox.by_ids(session, read.gaps) if read.gaps else []
    passed = inbox.forward(session, after=read.after_id, limit=limit)
    cursor.read_forward([row.id for row in passed], found=[row.id for row in found], now=now)
    return [row for row in found + passed if row.state == "pending"], len(passed) == limit


def apply_batch(engine: Engine, *, settings: Settings, read: dict[tuple[str, str], Parser],
                clock: Callable[[], datetime], limit: int = BATCH,
                cursor: PendingCursor | None = None,
                ticks: Callable[[], float] = time.monotonic) -> tuple[int, bool]:
    """Apply up to `limit` pending bodies of `inbox_bodies` in one transaction: how many,
    and whether there may be more to read now."""
    with Session(engine) as session:  # read and parse outside the write lock
        rows, more = _read_pending(session, cursor, limit=limit, now=ticks())
    if not rows:
        return 0, more
    parsed = [(row, _parse(row, read)) for row in rows]

    def work(careful: bool) -> int:
        now = clock()
        with Session(db.writer(engine)) as session, session.begin():
            db.serialize_writers(session, APPLY_LOCK)
            mine = inbox.still_pending(session, [row.id for row in rows])
            updates = _apply_parsed(session, [p for p in parsed if p[0].id in mine],
                                    settings=settings, now=now, careful=careful)
            if updates:
                inbox.set_states(session, updates)
            return len(mine)

    return _fast_then_careful(work), more


def apply_spooled(engine: Engine, spool: Spool, *, settings: Settings,
                  read: dict[tuple[str, str], Parser], clock: Callable[[], datetime],
                  after_id: int = 0, limit: int = BATCH) -> tuple[int, int]:
    """SQLite: move up to `limit` spooled bodies past `after_id` into `inbox_bodies` and
    apply them, in one transaction (one INSERT, and an UPDATE only for those not applied);
    how many, and the last spool id moved. The caller has them deleted from the spool now
    and then (`Drainer`), not after every batch."""
    spooled = spool.oldest_after(after_id, limit)
    if not spooled:
        return 0, after_id
    parsed = {row.id: _parse(row, read) for row in spooled if row.state == "pending"}

    def work(careful: bool) -> int:
        now = clock()
        with Session(db.writer(engine)) as session, session.begin():
            # Bodies to apply go in as applied now, the outcome of nearly all; only those
            # that come out otherwise (a duplicate, a failure) are updated after.
            stored = inbox.move_in(session, [row.as_inbox_row(applied_at=now if row.id in parsed
                                                              else None) for row in spooled])
            todo = [(row if stored[row.id] == row.id else replace(row, id=stored[row.id]),
                     parsed[row.id]) for row in spooled if row.id in stored and row.id in parsed]
            updates = _apply_parsed(session, todo, settings=settings, now=now,
                                    careful=careful)
            changed = [u for u in updates if u != (u[0], "applied", now, None)]
            if changed:
                inbox.set_states(session, changed)
            return len(spooled)

    return _fast_then_careful(work), spooled[-1].id


def wait_applied(engine: Engine, spool: Spool | None = None, *, timeout: float = 30.0) -> None:
    """Wait until no stored body is left to apply (the demo; a settle across processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if not inbox.count_pending(session) and (
                    spool is None or not spool.backlog(above=inbox.max_id(session))[0]):
                return
        time.sleep(0.01)
    raise TimeoutError("stored webhook bodies are still pending")


class Drainer:
    """Applies batches until none is pending; tells `on_applied` after each commit.

    Spooled bodies it has moved are deleted from the spool by whoever writes to it: in the
    server, the acknowledging writer, told the last id moved through `on_moved` now and then
    (store/spool.py says why); without `on_moved` (no server beside it), the drainer itself."""

    def __init__(self, engine: Engine, settings: Settings, clock: Callable[[], datetime], *,
                 spool: Spool | None = None,
                 on_applied: Callable[[], None] | None = None,
                 on_moved: Callable[[int], None] | None = None,
                 ticks: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._ticks = ticks  # the cursor's timing (GAP_SECONDS, RESCAN_SECONDS), FORGET_SECONDS
        self._spool = spool
        self._settings = settings
        self._read = parsers(settings)
        self._clock = clock
        self._on_applied = on_applied
        self._on_moved = on_moved or (spool.delete_through if spool is not None else None)
        postgresql = engine.dialect.name == "postgresql"
        self._batch = PG_BATCH if postgresql else BATCH
        self._cursor = PendingCursor() if postgresql else None
        # One drain at a time (the applier's thread, a test's settle): a drain that found
        # nothing past the cursor must not return while another has read bodies it has not
        # yet applied.
        self._draining = threading.Lock()
        # Spool ids: the last moved into the main database, and the last let go of.
        self._moved = self._forgotten = 0
        self._forgotten_at = ticks()

    def drain(self, *, whole: bool = True) -> int:
        """Apply batches until none is pending; how many bodies. `whole=False`: stop after
        the first batch that was not full (the caller waits a little for more: a batch of
        few bodies costs nearly as much as one of many)."""
        with self._draining:
            return self._drain(whole)

    def _drain(self, whole: bool) -> int:
        total = 0
        while True:
            done = 0
            if self._spool is not None:
                done, self._moved = apply_spooled(self._engine, self._spool,
                                                  settings=self._settings, read=self._read,
                                                  clock=self._clock, after_id=self._moved)
                if self._ticks() - self._forgotten_at > FORGET_SECONDS:
                    self._forget()
            more = done == BATCH
            if not done:  # PostgreSQL's bodies, or any left pending in `inbox_bodies`
                done, more = apply_batch(self._engine, settings=self._settings,
                                         read=self._read, clock=self._clock,
                                         limit=self._batch, cursor=self._cursor,
                                         ticks=self._ticks)
            if done and self._on_applied is not None:
                self._on_applied()
            total += done
            if not more and (not done or not whole):
                if not done:
                    self._forget()  # idle: a good moment to empty the spool of what was moved
                return total

    def _forget(self) -> None:
        """Let go of the bodies moved into the main database: have them deleted from the
        spool, and fold its log into its file."""
        if self._spool is not None and self._moved > self._forgotten:
            assert self._on_moved is not None  # given, or the spool's own, with a spool
            self._on_moved(self._moved)
            self._spool.checkpoint()
            self._forgotten = self._moved
        self._forgotten_at = self._ticks()

    def drain_logged(self, *, whole: bool = True) -> None:
        """`drain`, for a loop that must outlive a database outage: errors are logged."""
        try:
            self.drain(whole=whole)
        except Exception as exc:
            logger.error("could not apply stored webhook bodies; will retry", exc_info=exc,
                         extra={"action": "webhook_apply_stalled"})


class Applier:
    """The applier on a thread of this process. `wake` after each ingest commit."""

    def __init__(self, drainer: Drainer) -> None:
        self._drainer = drainer
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="replywindow-apply", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch under way, then stop; what is pending waits for the next start."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def settle(self) -> int:
        """Apply what is pending now, in the caller's thread (tests, the demo)."""
        return self._drainer.drain()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before draining: a wake during the drain is not lost
            self._drainer.drain_logged()
            self._wake.wait(POLL_SECONDS)
