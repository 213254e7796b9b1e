"""The applier's cursor on PostgreSQL (receiver/pending_cursor.py): it reads forward from
where it was, and still finds the bodies whose ids it passed before they were committed."""

from __future__ import annotations

from receiver.pending_cursor import (
    GAP_LIMIT,
    GAP_SECONDS,
    PLACE_BACK,
    RESCAN_SECONDS,
    Forward,
    PendingCursor,
    Rescan,
)


def _placed(newest: int = 10_000, now: float = 0.0) -> PendingCursor:
    cursor = PendingCursor()
    assert cursor.next_read(now) == Rescan(0)
    cursor.rescanned([], newest=newest, full=False, now=now)
    return cursor


def test_a_new_cursor_rescans_by_state_then_reads_forward_from_just_behind_the_newest() -> None:
    cursor = _placed(newest=10_000)
    assert cursor.next_read(1.0) == Forward(10_000 - PLACE_BACK, [])


def test_near_the_start_it_is_placed_at_the_start() -> None:
    assert _placed(newest=7).next_read(1.0) == Forward(0, [])


def test_it_moves_forward_to_the_last_id_read() -> None:
    cursor = _placed(newest=0)
    cursor.read_forward([1, 2, 3], found=[], now=1.0)
    assert cursor.next_read(1.0) == Forward(3, [])


def test_ids_passed_unseen_are_asked_for_again_until_found() -> None:
    cursor = _placed(newest=0)
    cursor.read_forward([1, 4, 6], found=[], now=1.0)  # 2, 3, 5 not committed yet
    assert cursor.next_read(2.0) == Forward(6, [2, 3, 5])
    cursor.read_forward([7], found=[3], now=2.0)
    assert cursor.next_read(3.0) == Forward(7, [2, 5])


def test_a_gap_not_found_in_gap_seconds_is_given_up() -> None:
    """An id whose transaction rolled back never shows up."""
    cursor = _placed(newest=0)
    cursor.read_forward([1, 3], found=[], now=1.0)
    assert cursor.next_read(1.0 + GAP_SECONDS) == Forward(3, [2])
    assert cursor.next_read(1.1 + GAP_SECONDS) == Forward(3, [])


def test_a_jump_wider_than_the_gap_limit_is_left_to_the_rescan() -> None:
    cursor = _placed(newest=0)
    cursor.read_forward([1, 3, 3 + GAP_LIMIT + 2], found=[], now=1.0)
    assert cursor.next_read(2.0) == Forward(3 + GAP_LIMIT + 2, [2])


def test_it_rescans_every_rescan_seconds_going_on_while_full_reads_stay_behind_the_cursor() -> None:
    cursor = _placed(newest=0, now=0.0)
    cursor.read_forward(list(range(1, 21)), found=[], now=1.0)
    assert isinstance(cursor.next_read(RESCAN_SECONDS - 1), Forward)
    assert cursor.next_read(RESCAN_SECONDS) == Rescan(0)
    cursor.rescanned([5, 9], newest=20, full=True, now=RESCAN_SECONDS)  # stragglers
    assert cursor.next_read(RESCAN_SECONDS) == Rescan(9)  # from where it stopped
    cursor.rescanned([12], newest=20, full=False, now=RESCAN_SECONDS + 1)
    assert cursor.next_read(RESCAN_SECONDS + 1) == Forward(20, [])  # never moved back
    assert cursor.next_read(2 * RESCAN_SECONDS + 1) == Rescan(0)


def test_a_full_rescan_read_that_reaches_past_the_cursor_hands_over_to_the_forward_reads() -> None:
    """A backlog: reading it by state, a batch at a time, would read every pending body's
    index entry again for each batch; past the cursor the reads go by id."""
    cursor = PendingCursor()
    assert cursor.next_read(0.0) == Rescan(0)
    cursor.rescanned([3, 4, 7], newest=90_000, full=True, now=0.0)
    assert cursor.next_read(0.1) == Forward(7, [])
    cursor.read_forward([8, 9], found=[], now=0.2)
    assert cursor.next_read(RESCAN_SECONDS) == Rescan(0)
    cursor.rescanned([5, 11, 12], newest=90_000, full=True, now=RESCAN_SECONDS)
    assert cursor.next_read(RESCAN_SECONDS) == Forward(12, [])


def test_a_rescan_moves_a_cursor_that_fell_far_behind_up_to_just_behind_the_newest() -> None:
    cursor = _placed(newest=0)
    cursor.read_forward([1], found=[], now=1.0)
    assert cursor.next_read(RESCAN_SECONDS + 1) == Rescan(0)
    cursor.rescanned([], newest=50_000, full=False, now=RESCAN_SECONDS + 1)
    assert cursor.next_read(RESCAN_SECONDS + 2) == Forward(50_000 - PLACE_BACK, [])
