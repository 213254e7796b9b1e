"""Spreading a WeCom staff account's sends: never faster than its rate, across requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sender.pacing import delayed_time, interval, spread

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
GAP = interval(20)  # 20 a minute: one every 3 s


def test_a_fresh_account_sends_the_first_part_now_and_the_rest_a_gap_apart() -> None:
    slots, next_free = spread(next_free=None, count=3, gap=GAP, now=NOW)
    assert slots == [NOW, NOW + timedelta(seconds=3), NOW + timedelta(seconds=6)]
    assert next_free == NOW + timedelta(seconds=9)
    assert [delayed_time(s, now=NOW) for s in slots] == [0, int(NOW.timestamp()) + 3,
                                                         int(NOW.timestamp()) + 6]


def test_a_second_request_waits_for_the_first_ones_slots() -> None:
    _, next_free = spread(next_free=None, count=5, gap=GAP, now=NOW)
    slots, _ = spread(next_free=next_free, count=1, gap=GAP, now=NOW + timedelta(seconds=1))
    assert slots == [NOW + timedelta(seconds=15)]


def test_an_idle_account_is_not_held_back_by_old_slots() -> None:
    slots, _ = spread(next_free=NOW - timedelta(hours=1), count=1, gap=GAP, now=NOW)
    assert slots == [NOW]
