"""Group commit for webhook bodies.

Every webhook request hands its body to `Ingestor.submit` and waits. One writer thread takes
whatever has queued up, stores and applies it all in one transaction, commits, and only then
releases the waiting requests: each callback is durable before its 200, yet a burst of
callbacks costs one commit, not one each. A body whose effects fail to apply is still stored
(its effects are rolled back to a savepoint and the body is marked `failed` for replay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from receiver.apply import apply_events
from receiver.errors import Unavailable
from receiver.events import Event
from receiver.settings import Settings
from store import db, inbox

logger = logging.getLogger(__name__)

MAX_BATCH = 512


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


def store_batch(session: Session, items: list[Received], *, settings: Settings,
                now: datetime) -> list[str]:
    """Store and apply `items` in the session's transaction; the state of each."""
    states = []
    for item in items:
        if item.error_code is not None:
            inbox.add_quarantined(
                session, vendor=item.vendor, route=item.route, received_at=item.received_at,
                headers=item.headers, body=item.body, error=item.error_code,
                detail=item.error_detail or "",
            )
            states.append("quarantined")
            continue
        row = inbox.add_body(
            session, vendor=item.vendor, route=item.route, received_at=item.received_at,
            headers=item.headers, body=item.body,
            dedup_key=next((e.key for e in item.events if e.key), None),
            event_count=len(item.events),
        )
        if item.parser_failure is not None:
            row.state, row.detail = "failed", item.parser_failure
            states.append(row.state)
            continue
        try:
            with session.begin_nested():
                row.state = apply_events(session, events=item.events, inbox_body_id=row.id,
                                         received_at=item.received_at, settings=settings, now=now)
        except Exception as exc:  # a bug in applying must not lose the body
            logger.exception("applying a webhook body failed; stored for replay",
                             extra={"action": "webhook_apply_failed", "inbox_body_id": row.id})
            row.state, row.detail = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        else:
            row.applied_at = now
        session.add(row)
        states.append(row.state)
    return states


class Ingestor:
    def __init__(self, engine: Engine, settings: Settings,
                 clock: Callable[[], datetime]) -> None:
        self._engine = db.writer(engine)
        self._settings = settings
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Received, asyncio.Future[str]] | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replywindow-ingest")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replywindow-ingest")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, item: Received) -> str:
        """Store (and apply) `item`; returns once it is committed."""
        if self._task is None:
            raise Unavailable("The service is starting or stopping; try again.")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await asyncio.shield(future)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            batch = []
            entry = await self._queue.get()
            while entry is not None:
                batch.append(entry)
                if len(batch) >= MAX_BATCH or self._queue.empty():
                    break
                entry = self._queue.get_nowait()
            stopping = entry is None
            if not batch:
                continue
            items = [item for item, _ in batch]
            try:
                states = await loop.run_in_executor(self._executor, self._write, items)
            except Exception:
                logger.exception("could not store webhook bodies",
                                 extra={"action": "webhook_store_failed", "count": len(items)})
                for _, future in batch:
                    if not future.done():
                        future.set_exception(
                            Unavailable("The store is unavailable; the body was not kept. "
                                        "Retry later."))
                continue
            for (_, future), state in zip(batch, states, strict=True):
                if not future.done():
                    future.set_result(state)

    def _write(self, items: list[Received]) -> list[str]:
        with Session(self._engine) as session, session.begin():
            return store_batch(session, items, settings=self._settings, now=self._clock())
