"""Keep Python's full garbage collections short in the server and its applier process.

CPython 3.11 runs a full (generation 2) collection whenever enough objects have outlived two
younger collections, and a full collection walks every object the process holds. Most of those
are made at start-up (modules, SQLAlchemy's metadata and mappers, pydantic's models) and live
as long as the process. Measured in the bench's `POST /v1/messages` run: a full collection
every ~1.5 s, each stopping the event loop 55-76 ms (~118,000 objects), and those pauses were
the requests' p99. Moved out of the collector's sight once start-up is done (`gc.freeze`), a
full collection walks only what was made since: 0.7-1.1 ms, measured the same way.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect once, then leave everything alive now out of every later collection."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """Undo `freeze_startup_objects` (at shutdown: a process that goes on, such as a test
    run, gets its objects collected again)."""
    gc.unfreeze()
