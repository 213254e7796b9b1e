"""JSON text for the JSON columns (message contents, status details, bot events, headers).

The applier writes several JSON values a body; with the standard library's encoder that was
~12 % of its time (docs/performance.md, "Seventh pass"). orjson writes the same JSON several
times faster. What orjson refuses (an integer over 64 bits, a key that is not a string) goes
to json.dumps, which takes those, so every value stored before is stored still. Either way the
text is compact, with non-ASCII characters as they are (not as \\u escapes): the bytes
Starlette's JSONResponse writes, so the API's hot paths render their answers here too
(receiver/raw_response.py). A number too large for a float (a body's 1e400, read as
infinity) is written by orjson as null, where json.dumps wrote Infinity, which no JSON reader but
Python's takes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """`encode`, as text (what the JSON columns bind)."""
    return encode(value).decode()
