"""Where the applier reads the next stored bodies on PostgreSQL, and the ids it still awaits.

A scan of `inbox_bodies` by state (`state = 'pending' ORDER BY id`) is exact on SQLite, which
updates its index entries in place. PostgreSQL leaves an applied body's `pending` index entry
behind until VACUUM, so such a scan from the start walks every body applied since the last
one: 17 ms a batch after 70,000 bodies, and no bound but autovacuum's (docs/performance.md,
"Ninth pass"). So on PostgreSQL the applier reads past a cursor, in id order, whatever the
state, and never walks back over what it has read.

Ids are handed out before their transaction commits: a body can become visible after a
higher id has been read (other replicas' writers, a batch stored again through a session
after its one statement failed). Each id the cursor passes without seeing is a gap, looked for
again with every read until it shows up or GAP_SECONDS pass (an id whose transaction rolled
back never does). For whatever that misses (a transaction held open past GAP_SECONDS,
bodies left by a crash, a jump in the sequence), a rescan by state runs when the cursor
starts and every RESCAN_SECONDS; it goes forward from where its last read ended, so it walks
the dead entries once, not once a batch, and hands over to the forward reads once it reaches
the cursor.

Pure: the caller reads, and tells what it found; `now` is a monotonic clock's reading.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

GAP_SECONDS = 30.0
RESCAN_SECONDS = 60.0
# Where a cursor (re)starts: this many ids behind the newest, so that bodies still being
# committed there are found as gaps, not left to the next rescan.
PLACE_BACK = 4096
# A jump in ids wider than this is not tracked id by id (the rescan finds what is in it).
GAP_LIMIT = 4096


@dataclass(frozen=True)
class Rescan:
    """Read pending bodies by state, past `after_id`."""

    after_id: int


@dataclass(frozen=True)
class Forward:
    """Read bodies past `after_id` whatever their state, and look again for `gaps`."""

    after_id: int
    gaps: list[int]


class PendingCursor:
    def __init__(self) -> None:
        self.after: int | None = None  # placed by the first rescan
        self._rescan_from: int | None = 0  # a rescan under way, from here
        self._rescan_at = 0.0
        self._gaps: dict[int, float] = {}  # id -> when the cursor passed it unseen

    def next_read(self, now: float) -> Rescan | Forward:
        if self._rescan_from is None and now >= self._rescan_at:
            self._rescan_from = 0
        if self._rescan_from is not None:
            return Rescan(self._rescan_from)
        assert self.after is not None
        for gap, since in list(self._gaps.items()):
            if now - since > GAP_SECONDS:
                del self._gaps[gap]
        return Forward(self.after, sorted(self._gaps))

    def rescanned(self, ids: list[int], *, newest: int, full: bool, now: float) -> None:
        """A rescan read these ids (ascending); `newest` is the highest id there was before
        it; `full`: it stopped at its limit, so there may be more."""
        if full and ids and self.after is not None and ids[-1] < self.after:
            self._rescan_from = ids[-1]  # more may be pending behind the cursor: go on
            return
        self._rescan_from = None
        self._rescan_at = now + RESCAN_SECONDS
        # Past the cursor (or with none yet) the forward reads go on from the last body this
        # read found: rescanning on would read every pending body again each batch (a
        # backlog's drain by state was quadratic: 30 ms a batch with 40,000 pending). A read
        # that was not full found every pending body there is.
        place = ids[-1] if full and ids else max(0, newest - PLACE_BACK)
        if self.after is None or place > self.after:
            self.after = place

    def read_forward(self, ids: list[int], *, found: Iterable[int], now: float) -> None:
        """A forward read returned these ids past the cursor (ascending), and found these
        gaps."""
        for gap in found:
            self._gaps.pop(gap, None)
        assert self.after is not None
        expected = self.after + 1
        for id_ in ids:
            if id_ - expected <= GAP_LIMIT:
                for gap in range(expected, id_):
                    self._gaps.setdefault(gap, now)
            expected = id_ + 1
        if ids:
            self.after = ids[-1]
