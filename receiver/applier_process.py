"""The applier in a child process of the server (REPLYWINDOW_APPLIER=process, the default).

Python runs one thread at a time per process: applying effects on a thread of the server
would take turns with the event loop that acknowledges the vendors. In its own process it
runs on another core. The two talk over the child's stdin and stdout:

- stdin: the settings as one JSON line (so no secret is on a command line), then one byte
  per ingest commit to wake it; end of file (the server stopped or died) stops it;
- stdout: lines: `a` after each commit that applied something, so the server wakes its
  long-polls and bot pushes at once; `m<id>` now and then on SQLite, the last spool id moved
  into the main database, for the server's writer to delete (store/spool.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from receiver import gc_tuning, logging_setup
from receiver.applier import POLL_SECONDS, Drainer, wait_applied
from receiver.settings import Settings
from store import db
from store import spool as spool_module
from store.spool import Spool

logger = logging.getLogger(__name__)

STOP_SECONDS = 15.0
RESTART_SECONDS = 1.0
# Acknowledgements first: with the cores busy, the applier yields and catches up afterwards
# (measured: nice 5 -> 10 gave ~10 % more acknowledgements at full load, about as many applied).
NICENESS = 10
# After a batch that was not full, the applier waits this long for more bodies: at a steady
# few thousand a second, batches of tens cost about half as much CPU a body as batches of a
# few (measured: 325 us a body in batches of 16, 135 in batches of 64). The price: effects
# land up to this much later.
GATHER_SECONDS = 0.02


class ApplierProcess:
    """The server's handle on its applier child."""

    def __init__(self, settings: Settings, engine: Engine, spool: Spool | None, *,
                 on_applied: Callable[[], None], on_moved: Callable[[int], None]) -> None:
        self._settings = settings
        self._engine = engine
        self._spool = spool
        self._on_applied = on_applied
        self._on_moved = on_moved
        self._partial = b""  # the start of a line the child has not finished writing
        self._child: subprocess.Popen[bytes] | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._reaped: asyncio.Future[int] | None = None

    def start(self) -> None:
        child = subprocess.Popen([sys.executable, "-m", "receiver.applier_process"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(self._settings.as_plain()).encode() + b"\n")
        child.stdin.flush()
        os.set_blocking(child.stdin.fileno(), False)  # a wake must never block the loop
        os.set_blocking(child.stdout.fileno(), False)
        asyncio.get_running_loop().add_reader(child.stdout.fileno(), self._applied)
        self._child = child
        self._partial = b""

    def _applied(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        try:
            data = os.read(self._child.stdout.fileno(), 4096)
        except BlockingIOError:
            return
        if not data:  # the child ended, though the server is not stopping: start another
            loop = asyncio.get_running_loop()
            child, self._child = self._child, None
            loop.remove_reader(child.stdout.fileno())
            child.stdout.close()
            with contextlib.suppress(OSError):
                child.stdin.close()  # type: ignore[union-attr]
            logger.error("the applier process ended; starting another",
                         extra={"action": "applier_restarted"})
            self._reaped = loop.run_in_executor(None, child.wait)  # no zombie left behind
            self._restart = loop.call_later(RESTART_SECONDS, self.start)
            return
        lines, self._partial = _lines(self._partial + data)
        moved = [int(line[1:]) for line in lines if line.startswith(b"m")]
        if moved:
            self._on_moved(max(moved))
        if b"a" in lines:
            self._on_applied()

    def wake(self) -> None:
        if self._child is None or self._child.stdin is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._child.stdin.fileno(), b"w")  # full pipe: it is awake anyway

    def settle(self) -> None:
        """Wait until nothing stored is left to apply (tests)."""
        wait_applied(self._engine, self._spool)

    async def stop(self) -> None:
        """Close its stdin: it finishes the batch under way and exits."""
        if self._restart is not None:
            self._restart.cancel()
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None and child.stdout is not None
        with contextlib.suppress(ValueError):
            asyncio.get_running_loop().remove_reader(child.stdout.fileno())
        with contextlib.suppress(OSError):
            child.stdin.close()
        try:
            await asyncio.to_thread(child.wait, STOP_SECONDS)
        except subprocess.TimeoutExpired:
            logger.error("the applier process did not stop; killed",
                         extra={"action": "applier_killed"})
            child.kill()
            await asyncio.to_thread(child.wait)
        child.stdout.close()


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines in `data`, and what is left of an unfinished one."""
    *lines, rest = data.split(b"\n")
    return lines, rest


def _tell_parent(line: bytes) -> None:
    """One line to the server. A full pipe drops it: the next `a` or `m` says as much."""
    with contextlib.suppress(BlockingIOError, BrokenPipeError):
        os.write(sys.stdout.fileno(), line + b"\n")


def main() -> None:
    logging_setup.configure()
    stdin = sys.stdin.buffer
    settings = Settings(_env_file=None, **json.loads(stdin.readline()))  # type: ignore[call-arg]
    engine = db.make_engine(settings.database_url)
    os.set_blocking(sys.stdout.fileno(), False)
    spool_path = spool_module.path_for(settings.database_url)
    spool = Spool(spool_path) if spool_path is not None else None  # the server made it
    drainer = Drainer(engine, settings, lambda: datetime.now(UTC), spool=spool,
                      on_applied=lambda: _tell_parent(b"a"),
                      on_moved=lambda through: _tell_parent(b"m%d" % through))
    parent = os.getppid()
    fd = stdin.fileno()
    # As the server does (receiver/gc_tuning.py): the modules, SQLAlchemy's metadata and the
    # settings live as long as the process; out of the collector's sight, a full collection
    # walks only what was made since (measured, draining 150,000 bodies: the collector's
    # time 1.7 -> 0.9 us a body, the full collections 23 -> 3.4 ms each).
    gc_tuning.freeze_startup_objects()
    # Acknowledging comes first: on a busy machine the scheduler favours the server.
    os.nice(NICENESS)
    try:
        while os.getppid() == parent:
            drainer.drain_logged(whole=False)
            readable, _, _ = select.select([fd], [], [], POLL_SECONDS)
            if readable and not os.read(fd, 65536):
                drainer.drain_logged()  # the server is stopping: what it stored is applied
                return
            time.sleep(GATHER_SECONDS)  # let more commits land: see GATHER_SECONDS
    finally:
        if spool is not None:
            spool.close()
        engine.dispose()


if __name__ == "__main__":
    main()
