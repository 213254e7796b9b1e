"""The WhatsApp 24-hour reply window (SPEC "Reply window"): open while
now < last_inbound_at + 24h - margin, at the boundaries to the second."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sender.window import WINDOW, WindowState, extended, inbound_time, open_since, window_state

T = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
H24 = timedelta(hours=24)
S = timedelta(seconds=1)
MARGIN = timedelta(seconds=120)
NAIVE = datetime(2026, 11, 24, 10, 0, 0)


@pytest.mark.parametrize(
    ("margin", "after", "is_open", "seconds_left"),
    [
        # margin 120 s: we stop two minutes before the vendor would.
        pytest.param(MARGIN, timedelta(0), True, 86280, id="m120 at the message"),
        pytest.param(MARGIN, H24 - MARGIN - S, True, 1, id="m120 24h-120s-1s"),
        # Rounded down: never promise a second the window does not have.
        pytest.param(MARGIN, H24 - MARGIN - S / 2, True, 0, id="m120 half a second left"),
        pytest.param(MARGIN, H24 - MARGIN, False, 0, id="m120 exactly 24h-120s"),
        pytest.param(MARGIN, H24 - MARGIN + S, False, 0, id="m120 24h-120s+1s"),
        pytest.param(MARGIN, H24 - S, False, 0, id="m120 23:59:59"),
        pytest.param(MARGIN, H24, False, 0, id="m120 24h"),
        # margin 0: the vendor's own rule.
        pytest.param(timedelta(0), H24 - S, True, 1, id="m0 23:59:59"),
        pytest.param(timedelta(0), H24, False, 0, id="m0 exactly 24h"),
        pytest.param(timedelta(0), H24 + S, False, 0, id="m0 24h+1s"),
        pytest.param(timedelta(0), timedelta(days=30), False, 0, id="m0 a month later"),
        # A clock a little behind the message time: still open, the whole window ahead.
        pytest.param(timedelta(0), -S, True, 86401, id="m0 now before the message"),
    ],
)
def test_window_boundaries(margin: timedelta, after: timedelta, is_open: bool,
                           seconds_left: int) -> None:
    state = window_state(T, now=T + after, margin=margin)

    assert state.open is is_open
    assert state.seconds_left == seconds_left
    assert state.last_inbound_at == T
    assert state.closes_at == T + H24
    assert state.expires_at == T + H24 - margin


def test_open_exactly_when_now_is_before_expires_at() -> None:
    for offset in range(-3, 4):
        now = T + H24 - MARGIN + offset * S
        state = window_state(T, now=now, margin=MARGIN)
        assert state.open is (now < T + H24 - MARGIN)
        assert state.seconds_left == max(0, -offset)


def test_no_inbound_ever_is_closed() -> None:
    assert window_state(None, now=T, margin=MARGIN) == WindowState(
        open=False, last_inbound_at=None, expires_at=None, closes_at=None, seconds_left=0)


def test_other_time_zones_are_the_same_instant() -> None:
    shanghai = timezone(timedelta(hours=8))
    state = window_state(T.astimezone(shanghai), now=T + H24 - MARGIN - S, margin=MARGIN)

    assert (state.open, state.seconds_left) == (True, 1)
    assert state.expires_at == T + H24 - MARGIN


def test_window_is_24_hours() -> None:
    assert WINDOW == H24


# -- extending the window ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "message", "expected"),
    [
        pytest.param(None, T, T, id="the first message opens it"),
        pytest.param(T, T + timedelta(hours=1), T + timedelta(hours=1), id="a newer one"),
        pytest.param(T, T - timedelta(hours=1), T, id="a late older one never shortens"),
        pytest.param(T, T, T, id="the same time"),
        pytest.param(T, T - timedelta(days=3), T, id="a very late one"),
    ],
)
def test_extended(last: datetime | None, message: datetime, expected: datetime) -> None:
    assert extended(last, message) == expected


def test_a_late_older_message_leaves_the_window_as_it_was() -> None:
    last = extended(extended(None, T), T - timedelta(hours=5))
    now = T + H24 - MARGIN - S

    assert window_state(last, now=now, margin=MARGIN).open is True


# -- when an inbound message counts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_at", "expected"),
    [
        pytest.param(T - timedelta(minutes=5), T - timedelta(minutes=5), id="in the past"),
        pytest.param(T, T, id="exactly when received"),
        pytest.param(T + timedelta(minutes=5), T, id="in the future: clamped"),
        pytest.param(T + timedelta(days=365), T, id="far in the future: clamped"),
        pytest.param(None, T, id="no time: when received"),
    ],
)
def test_inbound_time(message_at: datetime | None, expected: datetime) -> None:
    assert inbound_time(message_at, received_at=T) == expected


def test_a_future_timestamp_cannot_stretch_the_window() -> None:
    at = inbound_time(T + timedelta(hours=10), received_at=T)

    assert window_state(at, now=T + H24, margin=timedelta(0)).open is False


# -- open_since --------------------------------------------------------------------------------


@pytest.mark.parametrize("margin", [timedelta(0), MARGIN, timedelta(hours=1)])
def test_open_since_agrees_with_window_state(margin: timedelta) -> None:
    now = T + timedelta(days=2)
    since = open_since(now=now, margin=margin)

    assert since == now - H24 + margin
    for offset in (-2, -1, 0, 1, 2):
        last = since + offset * S
        assert window_state(last, now=now, margin=margin).open is (last > since)


# -- naive datetimes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: window_state(T, now=NAIVE, margin=MARGIN), id="window_state now"),
        pytest.param(lambda: window_state(NAIVE, now=T, margin=MARGIN),
                     id="window_state last_inbound_at"),
        pytest.param(lambda: window_state(None, now=NAIVE, margin=MARGIN),
                     id="window_state now, no inbound"),
        pytest.param(lambda: inbound_time(T, received_at=NAIVE), id="inbound_time received_at"),
        pytest.param(lambda: inbound_time(None, received_at=NAIVE),
                     id="inbound_time received_at, no time"),
        pytest.param(lambda: inbound_time(NAIVE, received_at=T), id="inbound_time message_at"),
        pytest.param(lambda: extended(T, NAIVE), id="extended message_at"),
        pytest.param(lambda: extended(NAIVE, T), id="extended last_inbound_at"),
        pytest.param(lambda: extended(None, NAIVE), id="extended first message"),
        pytest.param(lambda: open_since(now=NAIVE, margin=MARGIN), id="open_since now"),
    ],
)
def test_naive_datetimes_are_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call()
