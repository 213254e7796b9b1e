"""A JSON answer sent straight as its two ASGI messages, for the hot paths that run before
Starlette's router (receiver/webhooks.py, the window lookup in receiver/windows_api.py):
the same bytes and headers as Starlette's JSONResponse, without building one (in a profile
of the lookup, building the JSONResponse was ~10 % of the GIL's time, ~7.5 of it rendering;
rendered by orjson, the rendering is ~0.1 us instead of ~3)."""

from __future__ import annotations

from typing import Any

from store import json_text

JSON_HEADERS = [(b"content-type", b"application/json")]


async def send_json_bytes(send: Any, status: int, body: bytes,
                          headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send `body`, already JSON, with `status` and any extra `headers`."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def render(content: Any) -> bytes:
    """`content` as Starlette's JSONResponse renders it (compact, non-ASCII as is): the JSON
    columns' encoder (store/json_text.py). These answers hold no floats: a NaN would be
    written as null, where Starlette refuses it."""
    return json_text.encode(content)
