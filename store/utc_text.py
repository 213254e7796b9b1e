"""UTC times as text: the text datetime's own methods give, at a fraction of their cost, for
the times that come in runs.

`datetime.isoformat` costs ~11,000 instructions a call on CPython 3.11 (it formats through
PyUnicode_FromFormat and asks the zone for its offset): in the applier, four calls a webhook
body were 8.7 % of its instructions (callgrind; docs/performance.md, "Sixteenth pass"). The
times written there come in runs: a batch writes its `now` and a message's time on several
rows, and bodies received together share their second. So a time's second is formatted once
and kept, only its microseconds each time, and the database text of a time is kept whole.
Times read back from the store for an answer are scattered over days and would only miss
what is kept: those are written by `iso_z`, the plain way.

Only aware UTC times (`tzinfo is UTC`: what the clock gives and the store reads) take the
fast way; any other time goes the slow one, so the text is always the method's own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

KEEP = 4096  # texts kept in each table below; a full table is emptied and fills again

# (year, month, day, hour, minute, second) -> ("YYYY-MM-DD HH:MM:SS", "YYYY-MM-DDTHH:MM:SS")
_SECONDS: dict[tuple[int, ...], tuple[str, str]] = {}
# Whole database texts: a time recurs across a batch's statements, which each convert their
# own rows (store/bulk.py keeps them per statement); -2.5 % of the applier's instructions
# beyond the kept seconds (callgrind).
_DATABASE: dict[datetime, str] = {}


def _second(value: datetime) -> tuple[str, str]:
    key = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    texts = _SECONDS.get(key)
    if texts is None:
        if len(_SECONDS) >= KEEP:
            _SECONDS.clear()
        spaced = value.isoformat(" ", "seconds")[:19]  # once a second: the slow way will do
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


@overload
def iso_z(value: datetime) -> str: ...


@overload
def iso_z(value: datetime | None) -> str | None: ...


def iso_z(value: datetime | None) -> str | None:
    """`value.isoformat()` with a UTC offset written as "Z": the API's and the bots' times.
    None stays None."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
