"""Delivery status progression (SPEC "Delivery status"). Pure.

    queued -> accepted -> sent -> delivered -> read, and the terminal failed, rejected, expired

A later status implies the earlier ones; nothing moves backwards; a late `sent` never
un-fails a message; a `delivered`/`read` after `failed` wins (the customer has it) and is
flagged; `failed` after `delivered` is kept as an event but does not change the status;
`expired` (our guess that no outcome came) gives way to a late `delivered`, `read` or `failed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PROGRESS = ("queued", "accepted", "sent", "delivered", "read")
TERMINAL = ("failed", "rejected", "expired")
STATUSES = PROGRESS + TERMINAL
# Ours, before the vendor's word: being sent, or sent with no answer (a timed-out call).
PENDING = ("sending", "unknown")
RANK = {status: rank for rank, status in enumerate(PROGRESS)} | dict.fromkeys(PENDING, 0)


@dataclass(frozen=True)
class Transition:
    status: str
    # status -> time for every status this transition reaches, skipped ones included
    stamps: dict[str, datetime]
    flagged: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.stamps)


def advance(current: str, reported: str, *, at: datetime,
            stamped: frozenset[str] = frozenset()) -> Transition:
    """What `reported` (at `at`) does to a message whose status is `current`.

    `stamped` names the statuses that already have a time, so skipped ones get filled once.
    """
    if reported not in RANK and reported not in TERMINAL:
        return Transition(current, {})  # 'deleted' and the like: an event, not a status
    if current in TERMINAL:
        if current in ("failed", "expired") and reported in ("delivered", "read"):
            # The customer has it. After `failed` the vendor contradicted itself: flag it.
            return Transition(reported, _fill(reported, at, stamped),
                              flagged=current == "failed")
        if current == "expired" and reported == "failed":
            # `expired` was only our guess that no outcome came; the vendor's word replaces it.
            return Transition("failed", {"failed": at})
        return Transition(current, {})
    if reported in TERMINAL:
        if RANK[current] >= RANK["delivered"]:
            return Transition(current, {})
        return Transition(reported, {reported: at})
    if RANK[reported] <= RANK[current]:
        return Transition(current, {})
    return Transition(reported, _fill(reported, at, stamped))


def _fill(reported: str, at: datetime, stamped: frozenset[str]) -> dict[str, datetime]:
    """Times for `reported` and every earlier status not yet timed (`queued` has none)."""
    reached = PROGRESS[1 : RANK[reported] + 1]
    return {status: at for status in reached if status not in stamped or status == reported}
