"""Endpoints that the app calls before Starlette's router and middleware (receiver/app.py):
the bots' hot paths, answered as the routed endpoint would answer them, errors included, for
less CPU. In a profile of `POST /v1/messages`, the middleware and routing layers between
uvicorn and the endpoint were a few per cent of the interpreter's time a send."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from receiver.errors import handler_for, is_unexpected

Scope = dict[str, Any]
# What an endpoint returns: a Starlette Response, or any ASGI app (raw_response.JsonAnswer).
Endpoint = Callable[[Request], Awaitable[Any]]


async def answer(scope: Scope, receive: Any, send: Any, endpoint: Endpoint) -> None:
    """Answer with `endpoint(request)`; an exception is answered by the app's own handler
    for it, as Starlette's ExceptionMiddleware would, and one no handler takes as its
    ServerErrorMiddleware would (logged, a JSON 500, re-raised for the server)."""
    request = Request(scope, receive)
    try:
        response = await endpoint(request)
    except Exception as exc:
        handler = handler_for(exc)
        if is_unexpected(handler):
            await handler(request, exc)(scope, receive, send)
            raise
        response = handler(request, exc)
    await response(scope, receive, send)
