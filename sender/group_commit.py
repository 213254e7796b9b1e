"""Group commit for the sender's transactions.

Every transaction of the sender (storing a bot's message and claiming it, recording what the
vendor answered, the sweeps) is a function of a session: `work(session)`. Works handed in
while a batch is being written wait; the next batch runs them all in one transaction, in a
writer thread (store/writer_threads.py), commits once, and only then does each caller get
its result. Each work is still durable before its caller hears of it, but a burst of sends
costs one commit (one fsync on SQLite), not one each.

Works share the transaction, not their view of it: each gets the session with an empty
identity map, so an ORM object loaded by one work is never a stale copy of a row another
work changed with a Core statement.

Writes nothing in the batch reads back (a new message's row, a bot event, the vendor's
answer on a message, a reply noted in its conversation) can be left to the end of the batch
(`later`): they go in then as one executemany per statement, which costs a fraction of one
statement each. Only works run with `defers=True` see the batch that way; before any other
work runs, everything left so far is written, so it reads what it would have read.

When a work raises, the whole batch is rolled back and its works are run again one by one,
each in its own transaction: one bad work cannot take the others down, and none is ever
half-applied. A deadlock or a lock timeout (PostgreSQL) retries the batch as it was. So a
work must be safe to run again after a rollback: it may read and write the database and
decide things from what it read, but it must not act on the world (the vendor calls happen
outside, between transactions). A failed COMMIT is another matter: it may have committed
(the connection broke after sending it), so nothing is run again; every caller of the batch
gets the error, as it would have from a transaction of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from store import bulk, db
from store.writer_threads import WriterThreads

logger = logging.getLogger(__name__)

MAX_BATCH = 256
ATTEMPTS = 4
# The writer thread ends after this long with nothing to do (a GroupCommit has no stop); the
# next work starts one again.
LINGER_SECONDS = 5.0

Work = Callable[[Session], Any]
_LATER = "replywindow.group_commit.later"


class _Later:
    """Statements left to the end of the batch, grouped by statement and set of parameter
    names (an executemany needs one shape), written in the order each group was first used."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, frozenset[str]], tuple[Any, list[dict[str, Any]]]] = {}

    def add(self, statement: Any, params: dict[str, Any]) -> None:
        key = (id(statement), frozenset(params))
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = (statement, [params])
        else:
            group[1].append(params)

    def flush(self, session: Session) -> None:
        if not self._groups:
            return
        groups, self._groups = self._groups, {}
        connection = session.connection()
        for (_, keys), (statement, rows) in groups.items():
            many = bulk.for_statement(connection, statement, keys)
            if many is not None:
                many.run(connection, rows)
            else:
                connection.execute(statement, rows if len(rows) > 1 else rows[0])


def later(session: Session, statement: Any, params: dict[str, Any]) -> None:
    """Execute `statement` with `params` before the transaction commits: at the end of the
    batch, with the same statement of the batch's other works, when the work was run with
    `defers=True`; at once otherwise. Only for writes no work of the batch reads back."""
    pending: _Later | None = session.info.get(_LATER)
    if pending is None:
        session.connection().execute(statement, params)
    else:
        pending.add(statement, params)


def write_now(session: Session) -> None:
    """Write what was left for later (before reading what it may have changed)."""
    pending: _Later | None = session.info.get(_LATER)
    if pending is not None:
        pending.flush(session)


class Deferring:
    """The session as a writer of rows sees it (`session.connection().execute(stmt, row)`,
    e.g. store.events), with those writes left for later. Reads are not for it."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get_bind(self) -> Any:
        return self._session.get_bind()

    def connection(self) -> Deferring:
        return self

    def execute(self, statement: Any, params: dict[str, Any] | list[dict[str, Any]]) -> None:
        for row in [params] if isinstance(params, dict) else params:
            later(self._session, statement, row)


@dataclass
class _Item:
    work: Work
    future: asyncio.Future[Any]
    # Called in the event loop with the work's result once it is committed, even when the
    # caller stopped waiting: what must follow a commit cannot be lost with the caller.
    then: Callable[[Any], None] | None = None
    # The work leaves writes for later (`later`) and reads nothing the batch left for later.
    defers: bool = False


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class CommitFailed(Exception):
    """The COMMIT of a batch failed: it may or may not have taken effect."""


class GroupCommit:
    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = db.writer(engine)
        self._writer: WriterThreads[_Item] = WriterThreads(
            self._run_batch, name="replywindow-sender-commit", max_batch=max_batch,
            linger=LINGER_SECONDS)
        self._handing: list[_Item] = []
        self.batches = 0  # committed batches (tests and profiles look at them)
        self.works = 0

    async def run(self, work: Work, *, then: Callable[[Any], None] | None = None,
                  defers: bool = False) -> Any:
        """Run `work(session)` in the next batch; its result once that batch is committed."""
        loop = asyncio.get_running_loop()
        item = _Item(work, loop.create_future(), then, defers)
        self._handing.append(item)
        if len(self._handing) == 1:
            # Not at once: works handed in by tasks that are ready now go with this one.
            loop.call_soon(self._hand_over)
        return await item.future

    def _hand_over(self) -> None:
        items, self._handing = self._handing, []
        self._writer.put(items)

    def _run_batch(self, batch: list[_Item]) -> None:
        """In the writer thread: run and commit a batch, and have the loop answer it."""
        # A caller that gave up before its work started: the work is not run at all.
        batch = [item for item in batch if not item.future.cancelled()]
        if not batch:
            return
        try:
            results = self._write([(item.work, item.defers) for item in batch])
        except Exception as exc:  # the writer itself broke: every caller hears
            results = [_Failed(exc)] * len(batch)
        try:  # (a GroupCommit serves one event loop: its callers')
            batch[0].future.get_loop().call_soon_threadsafe(self._finish, batch, results)
        except RuntimeError:  # the loop is gone: nobody is waiting any more
            pass

    def _finish(self, batch: list[_Item], results: list[Any]) -> None:
        """On the loop: follow-ups, then each caller gets its result."""
        self.batches += 1
        self.works += len(batch)
        for item, result in zip(batch, results, strict=True):
            if not isinstance(result, _Failed) and item.then is not None:
                try:
                    item.then(result)
                except Exception:
                    logger.exception("a follow-up of a committed transaction failed",
                                     extra={"action": "group_commit_then_failed"})
            if item.future.done():
                continue
            if isinstance(result, _Failed):
                item.future.set_exception(result.error)
            else:
                item.future.set_result(result)

    # -- in the writer thread ---------------------------------------------------------------

    def _write(self, works: list[tuple[Work, bool]]) -> list[Any]:
        try:
            return self._transaction(works)
        except CommitFailed as exc:
            return [_Failed(exc.__cause__ or exc)] * len(works)
        except Exception as exc:
            if len(works) == 1:
                return [_Failed(exc)]
        # Something in the batch failed (all of it was rolled back): each on its own now.
        results = []
        for work in works:
            try:
                results.append(self._transaction([work])[0])
            except CommitFailed as exc:
                results.append(_Failed(exc.__cause__ or exc))
            except Exception as exc:
                results.append(_Failed(exc))
        return results

    def _transaction(self, works: list[tuple[Work, bool]]) -> list[Any]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._attempt(works)
            except CommitFailed:
                raise
            except Exception as exc:
                if not db.is_transient(exc) or attempt == ATTEMPTS:
                    raise
                logger.warning("sender transaction met a deadlock or a lock; retrying",
                               extra={"action": "sender_batch_retry", "attempt": attempt,
                                      "count": len(works)})
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def _attempt(self, works: list[tuple[Work, bool]]) -> list[Any]:
        with Session(self._engine, expire_on_commit=False) as session:
            transaction = session.begin()
            try:
                pending = session.info[_LATER] = _Later()
                results = []
                for work, defers in works:
                    if not defers:
                        pending.flush(session)
                    results.append(work(session))
                    # (A work of plain statements leaves nothing in the session.)
                    if len(works) > 1 and (session.identity_map or session.new
                                           or session.deleted):
                        session.flush()
                        session.expunge_all()
                pending.flush(session)
                session.flush()
                del session.info[_LATER]
            except BaseException:
                transaction.rollback()
                raise
            try:
                transaction.commit()
            except Exception as exc:
                raise CommitFailed("the batch's COMMIT failed; it may have taken effect") \
                    from exc
            return results
