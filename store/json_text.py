"""JSON text for the JSON columns (message contents, status details, bot events, headers).

The applier writes several JSON values a body; with the standard library's encoder that was
~12 % of its time (docs/performance.md, "Seventh pass"). orjson writes the same JSON several
times faster. What orjson refuses (an integer over 64 bits, a key that is not a string) goes
to json.dumps, which takes those, so every value stored before is stored still. The text
differs in spacing, in non-ASCII characters written as they are (not as \\u escapes), and in
a number too large for a float (a body's 1e400, read as infinity): null, where json.dumps
wrote Infinity, which no JSON reader but Python's takes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)
