"""The hot paths' JSON answers are the bytes Starlette's JSONResponse would send."""

from __future__ import annotations

import pytest
from starlette.responses import JSONResponse

from receiver.raw_response import render

CONTENTS = [
    # A window lookup's answer.
    {"channel": "whatsapp", "business_phone": "8613800000000", "recipient": "8613900000000",
     "open": True, "last_inbound_at": "2026-11-24T04:20:02.300335Z",
     "expires_at": "2026-11-25T04:20:02.300335Z", "closes_at": "2026-11-25T04:19:02.300335Z",
     "seconds_left": 86_340, "unanswered": False},
    # A webhook's error, its sentence not ASCII.
    {"error": {"code": "invalid_json", "message": "消息体不是有效的 JSON", "field": None}},
    # What orjson refuses goes the standard library's way: an integer over 64 bits, a key
    # that is not a string.
    {"id": 2**70, "nested": [{"n": -(2**65)}]},
    {1: "one", "two": [None, True, 0]},
]


@pytest.mark.parametrize("content", CONTENTS)
def test_render_writes_what_starlette_writes(content: object) -> None:
    assert render(content) == JSONResponse(content).body
