"""UTC times as text: the text datetime's own methods give, at a fraction of their cost.

`datetime.isoformat` costs ~11,000 instructions a call on CPython 3.11 (it formats through
PyUnicode_FromFormat and asks the zone for its offset): in the applier, four calls a webhook
body were 8.7 % of its instructions (callgrind; docs/performance.md, "Sixteenth pass"). Here a
time's second is formatted once and kept, and only its microseconds are formatted each time;
the database text of a time a batch writes again and again (its `now`, a message's time on
several rows) is kept whole.

Only aware UTC times (`tzinfo is UTC`: what the clock gives and the store reads) take the
fast way; any other time goes the slow one, so the text is always the method's own.
"""

from __future__ import annotations

from datetime import UTC, datetime

KEEP = 4096  # texts kept in each table below; a full table is emptied and fills again

# (year, month, day, hour, minute, second) -> ("YYYY-MM-DD HH:MM:SS", "YYYY-MM-DDTHH:MM:SS")
_SECONDS: dict[tuple[int, ...], tuple[str, str]] = {}
_DATABASE: dict[datetime, str] = {}


def _second(value: datetime) -> tuple[str, str]:
    key = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    texts = _SECONDS.get(key)
    if texts is None:
        if len(_SECONDS) >= KEEP:
            _SECONDS.clear()
        year, month, day, hour, minute, second = key
        spaced = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        texts = _SECONDS[key] = (spaced, f"{spaced[:10]}T{spaced[11:]}")
    return texts


def database(value: datetime) -> str:
    """An aware UTC time as SQLite's UTC column text (store.db.UTCDateTime):
    'YYYY-MM-DD HH:MM:SS.ffffff', microseconds always written."""
    if value.tzinfo is not UTC:
        raise ValueError(f"expected an aware UTC time, got {value!r}")
    text = _DATABASE.get(value)
    if text is None:
        if len(_DATABASE) >= KEEP:
            _DATABASE.clear()
        text = _DATABASE[value] = f"{_second(value)[0]}.{value.microsecond:06d}"
    return text


def iso(value: datetime) -> str:
    """`value.isoformat()`."""
    if value.tzinfo is not UTC:
        return value.isoformat()
    micro = value.microsecond
    second = _second(value)[1]
    return f"{second}.{micro:06d}+00:00" if micro else second + "+00:00"


def iso_z(value: datetime | None) -> str | None:
    """`value.isoformat()` with a UTC offset written as "Z" (the API's times); None stays
    None."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        return value.isoformat().replace("+00:00", "Z")
    micro = value.microsecond
    second = _second(value)[1]
    return f"{second}.{micro:06d}Z" if micro else second + "Z"
