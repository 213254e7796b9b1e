"""Reading vendor JSON the lenient way the vendors need: numbers as strings, seconds or
milliseconds, single-quoted values in published samples."""

from __future__ import annotations

import codecs
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from receiver.errors import BadPayload

_SINGLE_QUOTED_VALUE = re.compile(r"(:\s*)'([^'\"\\]*)'")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# ITNIO's zone-less local times (SMS reply_time); its own APIs answer in +08:00.
VENDOR_LOCAL_TIME = timezone(timedelta(hours=8))


def load_json(body: bytes) -> Any:
    """Parse a body; BadPayload naming what was wrong if it cannot be read."""
    try:  # not the utf-8-sig codec: it is Python code, several times slower
        text = (body[3:] if body.startswith(codecs.BOM_UTF8) else body).decode()
    except UnicodeDecodeError:
        raise BadPayload("The body is not UTF-8 text.", code="invalid_encoding") from None
    if not text.strip():
        raise BadPayload("The body is empty.", code="empty_body")
    try:
        payload = _loads(text)
        # Only \u escapes can smuggle in what a database refuses (lone surrogates, NUL).
        return _storable(payload) if "\\u" in text else payload
    except RecursionError:
        raise BadPayload("The body is nested too deeply to read.", code="invalid_json") from None
    except ValueError as exc:
        # Not every ValueError is a JSONDecodeError (e.g. an integer over 4300 digits).
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise BadPayload(f"The body is not valid JSON ({reason}{where}).",
                         code="invalid_json") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json accepts NaN/Infinity; databases do not


# One decoder for every body: json.loads with an option builds a new one per call.
_DECODE = json.JSONDecoder(parse_constant=_no_constants).decode


def _loads(text: str) -> Any:
    try:
        return _DECODE(text)
    except ValueError:
        repaired = _SINGLE_QUOTED_VALUE.sub(r'\1"\2"', text)
        if repaired == text:
            raise
        try:
            return _DECODE(repaired)
        except (ValueError, RecursionError):
            pass
        raise


def _storable(value: Any) -> Any:
    """`value` with lone surrogates and NUL characters replaced by U+FFFD."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def objects(payload: Any, *, what: str) -> list[dict[str, Any]]:
    """One object or an array of objects, as a list."""
    items = payload if isinstance(payload, list) else [payload]
    if not items or not all(isinstance(item, dict) for item in items):
        raise BadPayload(f"Expected {what} as a JSON object or an array of objects.",
                         code="wrong_shape")
    return items


def text(value: Any) -> str | None:
    """A string from a string or a number; None for anything else or blank."""
    if type(value) is str:  # by far the most common: first
        return value.strip() or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)  # not via float: a big int would overflow it
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def epoch(value: Any) -> datetime | None:
    """Epoch seconds or milliseconds (as a number or a string), or an ISO time."""
    raw = text(value)
    if raw is None:
        return None
    try:
        number = float(raw)
    except ValueError:
        return iso(raw)
    if number > 1e12:  # milliseconds
        number /= 1000
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def iso(value: Any) -> datetime | None:
    """An ISO-8601 or 'YYYY-MM-DD HH:MM:SS' time; zone-less ones are the vendor's local time."""
    raw = text(value)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=VENDOR_LOCAL_TIME)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        return None


def required(item: dict[str, Any], *path: str, what: str) -> str:
    """A string at `path`, or BadPayload: the body has the wrong shape for `what`."""
    value: Any = item
    for step in path:
        value = mapping(value).get(step)
    found = text(value)
    if found is None:
        raise BadPayload(f"{what} has no {'.'.join(path)}.", code="wrong_shape")
    return found
