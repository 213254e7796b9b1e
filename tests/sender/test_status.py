"""Delivery status progression (SPEC "Delivery status"): later statuses imply earlier ones,
nothing moves backwards, and the few ways a terminal status gives way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from sender.status import PROGRESS, RANK, STATUSES, TERMINAL, Transition, advance

T = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
LATER = T + timedelta(minutes=5)
PRE_DELIVERED = ("queued", "accepted", "sent")
# What the vendors report that is not one of our statuses.
NOT_STATUSES = ("deleted", "pending", "")


# -- the scenarios the SPEC names -----------------------------------------------------------


def test_read_with_no_delivered_fills_the_skipped_statuses_with_its_time() -> None:
    transition = advance("accepted", "read", at=T, stamped=frozenset({"accepted"}))

    assert transition == Transition("read", {"sent": T, "delivered": T, "read": T})


def test_read_from_queued_fills_accepted_too_but_never_queued() -> None:
    transition = advance("queued", "read", at=T)

    assert transition.stamps == {"accepted": T, "sent": T, "delivered": T, "read": T}


def test_read_then_delivered_stays_read() -> None:
    first = advance("sent", "read", at=T, stamped=frozenset({"accepted", "sent"}))
    then = advance(first.status, "delivered", at=LATER,
                   stamped=frozenset({"accepted", "sent", *first.stamps}))

    assert first.status == "read"
    assert then == Transition("read", {})
    assert not then.changed


@pytest.mark.parametrize("late", ["queued", "accepted", "sent"])
def test_a_late_sent_never_unfails(late: str) -> None:
    assert advance("failed", late, at=LATER) == Transition("failed", {})


@pytest.mark.parametrize("late", ["delivered", "read"])
def test_delivered_or_read_after_failed_wins_and_is_flagged(late: str) -> None:
    transition = advance("failed", late, at=LATER,
                         stamped=frozenset({"accepted", "sent", "failed"}))

    assert transition.status == late
    assert transition.flagged is True
    assert transition.stamps == {s: LATER for s in PROGRESS[3 : RANK[late] + 1]}


@pytest.mark.parametrize("current", ["delivered", "read"])
def test_failed_after_delivered_keeps_delivered(current: str) -> None:
    assert advance(current, "failed", at=LATER) == Transition(current, {})


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("reported", NOT_STATUSES)
def test_deleted_and_other_vendor_words_change_nothing(current: str, reported: str) -> None:
    assert advance(current, reported, at=T) == Transition(current, {})


@pytest.mark.parametrize(
    ("current", "expected"),
    [("queued", "expired"), ("accepted", "expired"), ("sent", "expired"),
     ("delivered", "delivered"), ("read", "read"), ("failed", "failed"),
     ("rejected", "rejected"), ("expired", "expired")],
)
def test_expired_only_from_a_status_with_no_outcome(current: str, expected: str) -> None:
    transition = advance(current, "expired", at=T)

    assert transition.status == expected
    assert transition.stamps == ({"expired": T} if expected != current else {})


@pytest.mark.parametrize("late", ["delivered", "read"])
def test_a_late_outcome_after_expired_replaces_it(late: str) -> None:
    transition = advance("expired", late, at=LATER, stamped=frozenset({"accepted", "expired"}))

    assert transition.status == late
    assert transition.flagged is False  # not a contradiction: expiry was our own guess
    assert "accepted" not in transition.stamps
    assert transition.stamps[late] == LATER


def test_a_late_failure_after_expired_replaces_it() -> None:
    assert advance("expired", "failed", at=LATER) == Transition("failed", {"failed": LATER})


@pytest.mark.parametrize("late", ["accepted", "sent", "rejected"])
def test_no_outcome_after_expired_leaves_it(late: str) -> None:
    assert advance("expired", late, at=LATER) == Transition("expired", {})


@pytest.mark.parametrize("reported", STATUSES)
def test_rejected_is_final(reported: str) -> None:
    assert advance("rejected", reported, at=T) == Transition("rejected", {})


@pytest.mark.parametrize(
    ("stamped", "expected"),
    [
        (frozenset(), {"accepted", "sent", "delivered", "read"}),
        (frozenset({"accepted"}), {"sent", "delivered", "read"}),
        (frozenset({"accepted", "sent"}), {"delivered", "read"}),
        (frozenset({"accepted", "sent", "delivered"}), {"read"}),
        (frozenset({"sent"}), {"accepted", "delivered", "read"}),  # a hole is filled
    ],
)
def test_already_stamped_statuses_are_not_restamped(stamped: frozenset[str],
                                                     expected: set[str]) -> None:
    transition = advance("queued", "read", at=T, stamped=stamped)

    assert set(transition.stamps) == expected
    assert set(transition.stamps).isdisjoint(stamped - {"read"})


@pytest.mark.parametrize("reported", ["failed", "rejected", "expired"])
@pytest.mark.parametrize("current", PRE_DELIVERED)
def test_a_terminal_status_stamps_only_itself(current: str, reported: str) -> None:
    assert advance(current, reported, at=T) == Transition(reported, {reported: T})


def test_a_step_forward_stamps_only_the_new_status() -> None:
    assert advance("accepted", "sent", at=T, stamped=frozenset({"accepted"})) == Transition(
        "sent", {"sent": T})


# -- every pair ------------------------------------------------------------------------------


# EXPECTED[current][reported] -> the status after, written out by hand.
_COLUMNS = ("queued", "accepted", "sent", "delivered", "read", "failed", "rejected", "expired")
_ROWS = {
    "queued":    ("queued", "accepted", "sent", "delivered", "read", "failed", "rejected",
                  "expired"),
    "accepted":  ("accepted", "accepted", "sent", "delivered", "read", "failed", "rejected",
                  "expired"),
    "sent":      ("sent", "sent", "sent", "delivered", "read", "failed", "rejected", "expired"),
    "delivered": ("delivered", "delivered", "delivered", "delivered", "read", "delivered",
                  "delivered", "delivered"),
    "read":      ("read",) * 8,
    "failed":    ("failed", "failed", "failed", "delivered", "read", "failed", "failed",
                  "failed"),
    "rejected":  ("rejected",) * 8,
    "expired":   ("expired", "expired", "expired", "delivered", "read", "failed", "expired",
                  "expired"),
}
EXPECTED = {(c, r): after for c, row in _ROWS.items() for r, after in zip(_COLUMNS, row,
                                                                           strict=True)}


def test_the_table_covers_every_pair() -> None:
    assert set(_COLUMNS) == set(STATUSES) == set(_ROWS)
    assert len(EXPECTED) == len(STATUSES) ** 2


def _allowed(current: str, after: str) -> bool:
    """The SPEC's one-way rule: forward in rank, or to a terminal status before delivery, or
    the customer has it after a failure or an expiry, or the vendor's failure after an expiry."""
    if after == current:
        return True
    if current in RANK and after in RANK:
        return RANK[after] > RANK[current]
    if after in TERMINAL:
        return current in PRE_DELIVERED or (current, after) == ("expired", "failed")
    return current in ("failed", "expired") and after in ("delivered", "read")


@pytest.mark.parametrize(("current", "reported"), sorted(EXPECTED))
def test_every_pair(current: str, reported: str) -> None:
    transition = advance(current, reported, at=T)

    assert transition.status == EXPECTED[current, reported]
    assert _allowed(current, transition.status)
    # A status change always carries the new status's time; no change carries none.
    if transition.status == current:
        assert transition == Transition(current, {})
    else:
        assert transition.stamps[transition.status] == T
        assert all(at == T for at in transition.stamps.values())
        assert "queued" not in transition.stamps
    assert transition.flagged is (current == "failed" and transition.status in RANK)


# -- order does not matter ---------------------------------------------------------------------


def _replay(reports: tuple[str, ...]) -> tuple[str, dict[str, datetime]]:
    """Apply reports in order the way the store does: a stamp, once set, is kept."""
    status, stamps = "accepted", {"accepted": T}
    for minute, reported in enumerate(reports, start=1):
        transition = advance(status, reported, at=T + timedelta(minutes=minute),
                             stamped=frozenset(stamps))
        for name, at in transition.stamps.items():
            stamps.setdefault(name, at)
        status = transition.status
    return status, stamps


@pytest.mark.parametrize(
    "reports",
    [("sent", "delivered", "read"), ("sent", "failed"), ("delivered", "failed"),
     ("read", "failed"), ("sent", "delivered", "read", "failed"), ("sent", "expired"),
     ("delivered", "expired"), ("failed", "expired"), ("sent", "read", "expired", "deleted")],
)
def test_the_final_status_does_not_depend_on_arrival_order(reports: tuple[str, ...]) -> None:
    finals = {_replay(order)[0] for order in permutations(reports)}

    assert len(finals) == 1


def test_out_of_order_reports_still_stamp_every_status_once() -> None:
    status, stamps = _replay(("read", "sent", "delivered"))

    assert status == "read"
    # read came first (minute 1) and filled the rest; the late ones did not overwrite.
    assert stamps == {"accepted": T, "sent": T + timedelta(minutes=1),
                      "delivered": T + timedelta(minutes=1), "read": T + timedelta(minutes=1)}
