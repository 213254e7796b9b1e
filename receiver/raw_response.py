"""A JSON answer sent straight as its two ASGI messages, for the hot paths that run before
Starlette's router (receiver/webhooks.py, receiver/unrouted.py's endpoints):
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
                "headers": [(b"content-length", str(len(body)).encode()), *JSON_HEADERS,
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class JsonAnswer:
    """`JSONResponse(content, status_code=status)` as an ASGI app: the same bytes and
    headers, rendered by `render`."""

    __slots__ = ("body", "status")

    def __init__(self, content: Any, status: int = 200) -> None:
        self.body, self.status = render(content), status

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send_json_bytes(send, self.status, self.body)


def render(content: Any) -> bytes:
    """`content` as Starlette's JSONResponse renders it (compact, non-ASCII as is): the JSON
    columns' encoder (store/json_text.py). These answers hold no floats: a NaN would be
    written as null, where Starlette refuses it."""
    return json_text.encode(content)
