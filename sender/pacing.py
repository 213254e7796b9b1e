"""Spreading one WeCom staff account's messages over time (SPEC: "WeCom sends are spread with
`delayed_time` so one staff account sends no faster than its configured rate"). Pure."""

from __future__ import annotations

from datetime import datetime, timedelta


def interval(per_minute: int) -> timedelta:
    return timedelta(seconds=60 / per_minute)


def spread(*, next_free: datetime | None, count: int, gap: timedelta,
           now: datetime) -> tuple[list[datetime], datetime]:
    """`count` send times, `gap` apart, none earlier than `now` or the account's next free
    slot; and the account's next free slot after them."""
    start = max(now, next_free) if next_free is not None else now
    slots = [start + gap * index for index in range(count)]
    return slots, (slots[-1] + gap) if slots else start


def delayed_time(slot: datetime, *, now: datetime) -> int:
    """The vendor's `delayed_time`: 0 for 'now', else the epoch second to send at."""
    return 0 if slot <= now else int(slot.timestamp())
