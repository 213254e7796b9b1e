"""store/utc_text.py writes exactly what datetime's own methods write, for any time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from store import utc_text
from store.db import UTCDateTime

utc_times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                         timezones=st.just(UTC))
other_times = st.datetimes(timezones=st.sampled_from(
    [timezone(timedelta(hours=8)), timezone(timedelta(0)), ZoneInfo("UTC"),
     ZoneInfo("Asia/Kolkata")]))


@given(utc_times)
def test_a_utc_time_is_written_as_isoformat_writes_it(value: datetime) -> None:
    assert utc_text.iso(value) == value.isoformat()
    assert utc_text.iso_z(value) == value.isoformat().replace("+00:00", "Z")


@given(utc_times)
def test_a_utc_time_is_written_as_the_utc_column_writes_it_on_sqlite(value: datetime) -> None:
    dialect = sqlite.dialect()
    column = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert column is not None
    assert utc_text.database(value) == column(value)


@given(st.one_of(other_times, st.datetimes()))
def test_any_other_time_goes_the_slow_way_with_the_same_text(value: datetime) -> None:
    assert utc_text.iso(value) == value.isoformat()
    assert utc_text.iso_z(value) == value.isoformat().replace("+00:00", "Z")


def test_the_database_text_is_only_for_utc_times() -> None:
    with pytest.raises(ValueError, match="aware UTC"):
        utc_text.database(datetime(2026, 11, 25, 12, 0))
    with pytest.raises(ValueError, match="aware UTC"):
        utc_text.database(datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8))))


def test_none_is_no_time() -> None:
    assert utc_text.iso_z(None) is None


def test_the_kept_texts_stay_right_past_the_number_kept() -> None:
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    times = [start + timedelta(seconds=i, microseconds=i) for i in range(2 * utc_text.KEEP + 5)]
    for _ in range(2):  # the second time round, some are kept and some were let go of
        for value in times:
            assert utc_text.database(value) == value.replace(tzinfo=None).isoformat(
                " ", "microseconds")
            assert utc_text.iso(value) == value.isoformat()
