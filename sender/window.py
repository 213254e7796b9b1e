"""The WhatsApp 24-hour reply window. Pure: the clock is always passed in.

A window is open while `now < last_inbound_at + 24h - margin`. The margin makes us stop
sending free-form messages a little before the vendor would refuse them (131047).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(hours=24)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


@dataclass(frozen=True)
class WindowState:
    open: bool
    last_inbound_at: datetime | None
    expires_at: datetime | None  # when we stop sending custom messages (margin applied)
    closes_at: datetime | None  # when the vendor stops accepting them
    seconds_left: int


def window_state(last_inbound_at: datetime | None, *, now: datetime,
                 margin: timedelta) -> WindowState:
    _aware(now, "now")
    if last_inbound_at is None:
        return WindowState(False, None, None, None, 0)
    _aware(last_inbound_at, "last_inbound_at")
    closes_at = last_inbound_at + WINDOW
    expires_at = closes_at - margin
    is_open = now < expires_at
    seconds_left = int((expires_at - now).total_seconds()) if is_open else 0
    return WindowState(is_open, last_inbound_at, expires_at, closes_at, seconds_left)


def inbound_time(message_at: datetime | None, *, received_at: datetime) -> datetime:
    """When an inbound message counts as sent: its own time, never later than we got it."""
    _aware(received_at, "received_at")
    if message_at is None:
        return received_at
    return min(_aware(message_at, "message_at"), received_at)


def extended(last_inbound_at: datetime | None, message_at: datetime) -> datetime:
    """The window after one more inbound message: a late, older one never shortens it."""
    _aware(message_at, "message_at")
    if last_inbound_at is None:
        return message_at
    return max(_aware(last_inbound_at, "last_inbound_at"), message_at)


def open_since(*, now: datetime, margin: timedelta) -> datetime:
    """Windows whose last inbound is after this instant are open at `now`."""
    return _aware(now, "now") - WINDOW + margin
