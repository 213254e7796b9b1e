"""GET /v1/events: the feed of what happened, for bots (long-poll)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver.auth import Caller, authenticate
from receiver.errors import Invalid
from receiver.runtime import Runtime
from store import events
from store.models import Event
from store.utc_text import iso_z

CURSOR = re.compile(r"[0-9]{1,19}\.[0-9]{1,19}")
BIGINT_MAX = 2**63 - 1  # txid and id are bigints: a larger number is no cursor of ours
MAX_WAIT = 30
MAX_LIMIT = 500
# Other replicas' events are seen by polling; this process's wake the wait at once.
POLL = 0.25


def cursor_of(event: Event) -> str:
    return f"{event.txid}.{event.id}"


def event_body(event: Event) -> dict[str, Any]:
    return {"id": f"evt_{event.id}", "cursor": cursor_of(event), "type": event.kind,
            "created_at": iso_z(event.created_at), "data": event.data}


def _parse_cursor(raw: str | None) -> tuple[int, int]:
    if raw is None or raw in ("", "0"):
        return (0, 0)
    if not CURSOR.fullmatch(raw):
        raise Invalid("after must be a cursor this API gave out (next_cursor).",
                      code="invalid_parameter", field="after")
    txid, event_id = (int(part) for part in raw.split("."))
    if txid > BIGINT_MAX or event_id > BIGINT_MAX:
        raise Invalid("after must be a cursor this API gave out (next_cursor).",
                      code="invalid_parameter", field="after")
    return txid, event_id


def _int(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or int(raw) > high:
        raise Invalid(f"{name} must be a whole number from 0 to {high}.",
                      code="invalid_parameter", field=name)
    return int(raw)


def _read(runtime: Runtime, caller: Caller, after: tuple[int, int], limit: int) -> list[Event]:
    with Session(runtime.engine) as session:
        return events.after(session, cursor=after,
                            accounts=sorted(caller.accounts) if caller.accounts is not None
                            else None, limit=limit)


async def list_events(request: Request) -> JSONResponse:
    runtime: Runtime = request.state.runtime
    caller = await run_in_threadpool(authenticate, request, runtime)
    after = _parse_cursor(request.query_params.get("after"))
    wait = _int(request, "wait", 0, MAX_WAIT)
    limit = _int(request, "limit", 100, MAX_LIMIT) or 1
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        found = await run_in_threadpool(_read, runtime, caller, after, limit)
        remaining = deadline - asyncio.get_running_loop().time()
        if found or remaining <= 0:
            break
        await runtime.notifier.wait(min(POLL, remaining))
    next_cursor = cursor_of(found[-1]) if found else f"{after[0]}.{after[1]}"
    return JSONResponse({"events": [event_body(e) for e in found], "next_cursor": next_cursor})


routes = [Route("/v1/events", list_events, methods=["GET"])]
