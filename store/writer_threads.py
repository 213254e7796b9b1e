"""Writer threads: each takes whatever has queued up, writes it in one go, and goes straight on
to what queued meanwhile.

Both group commits (webhook bodies, receiver/ingest.py; the sender's transactions,
sender/group_commit.py) put their work here from the event loop and are answered on it. The
loop is never on the path from one commit to the next: measured, a writer that the loop handed
each batch sat idle a third to two thirds of the time, waiting for the loop to finish answering
the last batch before it handed over the next.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")


class WriterThreads(Generic[Item]):
    """`threads` threads that call `handle(batch)` with up to `max_batch` queued items, oldest
    first. Started by `start()`, or with `linger` set, on demand by `put`: a thread that has
    had nothing to do for `linger` seconds ends, and the next `put` starts one again (for
    owners that have no start and stop of their own)."""

    def __init__(self, handle: Callable[[list[Item]], None], *, name: str, max_batch: int,
                 threads: int = 1, linger: float | None = None) -> None:
        self._handle = handle
        self._name = name
        self._max_batch = max_batch
        self._count = threads
        self._linger = linger
        # The queue, and the lock (with its condition) that guards it, `_idle` (threads
        # waiting for work: only they are woken, so a busy writer costs a put no system
        # call) and `_alive`.
        self._queue: deque[Item] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._idle = 0
        self._alive = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        with self._ready:
            self._stopping = False
            while self._alive < self._count:
                self._spawn()

    def put(self, items: Iterable[Item]) -> None:
        with self._ready:
            self._queue.extend(items)
            if self._idle:
                self._ready.notify()
            elif self._linger is not None and self._alive < self._count:
                self._spawn()

    def stop(self) -> list[threading.Thread]:
        """Ask the threads to end once the queue is empty; they are returned, to be joined
        (off the event loop: they may be writing)."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
            threads, self._threads = self._threads, []
        return threads

    def _spawn(self) -> None:  # with the lock held
        thread = threading.Thread(target=self._run, daemon=True,
                                  name=f"{self._name}-{len(self._threads)}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        self._alive += 1
        thread.start()

    def _take(self) -> list[Item]:
        """The next batch; waits for one. Empty: this thread ends (and is no longer alive)."""
        with self._ready:
            while not self._queue and not self._stopping:
                self._idle += 1
                try:
                    woken = self._ready.wait(self._linger)
                finally:
                    self._idle -= 1
                if not woken and not self._queue:
                    break  # lingered long enough
            queue = self._queue
            batch = [queue.popleft() for _ in range(min(self._max_batch, len(queue)))]
            if not batch:
                self._alive -= 1
            return batch

    def _run(self) -> None:
        while batch := self._take():
            try:
                self._handle(batch)
            except Exception:  # a bug of the owner's: its batch is lost, not the thread
                logger.exception("a writer thread's batch failed unanswered",
                                 extra={"action": "writer_thread_failed", "count": len(batch)})
