"""GET /v1/windows/...: the WhatsApp reply windows, for bots."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import raw_response, unrouted
from receiver.auth import authenticate, known_caller
from receiver.errors import Invalid
from receiver.runtime import Runtime
from sender.window import WINDOW, open_since, window_state
from store import conversations
from store.utc_text import iso_z

# ASCII digits only (\d also takes other scripts' digits), matched whole (`$` lets "\n" by).
PHONE = re.compile(r"\+?[0-9]{7,14}")
WHOLE_NUMBER = re.compile(r"[0-9]{1,6}")  # no bound here needs more; int() on more is slow
MAX_LIMIT = 1000


def _phone(value: str, field: str) -> str:
    if not PHONE.fullmatch(value):
        raise Invalid(f"{field} must be a phone number of 7 to 14 digits (country code first).",
                      code="invalid_phone", field=field)
    return value.lstrip("+")


def _int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not WHOLE_NUMBER.fullmatch(raw) or not low <= int(raw) <= high:
        raise Invalid(f"{name} must be a whole number from {low} to {high}.",
                      code="invalid_parameter", field=name)
    return int(raw)


def _bool_param(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise Invalid(f"{name} must be true or false.", code="invalid_parameter", field=name)
    return raw in ("true", "1")


class WindowTimes(Protocol):
    """A Conversation, or store.conversations.WindowTimes."""

    @property
    def last_inbound_at(self) -> datetime | None: ...

    @property
    def last_outbound_at(self) -> datetime | None: ...


def window_body(conversation: WindowTimes | None, *, business: str, recipient: str,
                now: datetime, margin: timedelta) -> dict[str, Any]:
    last_inbound = conversation.last_inbound_at if conversation else None
    state = window_state(last_inbound, now=now, margin=margin)
    last_outbound = conversation.last_outbound_at if conversation else None
    return {
        "channel": "whatsapp",
        "business_phone": business,
        "recipient": recipient,
        "open": state.open,
        "last_inbound_at": iso_z(state.last_inbound_at),
        "expires_at": iso_z(state.expires_at),
        "closes_at": iso_z(state.closes_at),
        "seconds_left": state.seconds_left,
        "unanswered": last_inbound is not None
        and (last_outbound is None or last_outbound < last_inbound),
    }


async def _window(request: Request, runtime: Runtime, business: str,
                  recipient: str) -> dict[str, Any]:
    """The lookup's answer (`window_body`); `business` and `recipient` as in the path. The
    hot path for bots: async, so the common case (a configured key or one verified in the
    last seconds, see receiver/auth.py) costs no threadpool hop. On SQLite the read (one
    indexed SELECT, tens of microseconds) runs right here: measured, that beats handing it
    to a worker thread. On PostgreSQL it is awaited here (store/pg_reads.py). A key not yet
    verified goes to the threadpool."""
    caller = known_caller(request, runtime) or await run_in_threadpool(authenticate, request,
                                                                         runtime)
    business = _phone(business, "business_phone")
    recipient = _phone(recipient, "recipient")
    caller.require(business)
    now = runtime.clock()
    if runtime.reads is None:  # SQLite
        times = conversations.window_times(runtime.engine, channel="whatsapp",
                                           account=business, customer=recipient)
    else:
        times = await conversations.window_times_pg(
            runtime.reads, runtime.engine.dialect, channel="whatsapp", account=business,
            customer=recipient)
    return window_body(times, business=business, recipient=recipient, now=now,
                       margin=runtime.margin)


async def get_window(request: Request) -> JSONResponse:
    """The route as Starlette answers it: only what `lookup_params` leaves to the router (a
    HEAD, an app under a root_path). GET comes through `answer_lookup`."""
    return JSONResponse(await _window(request, request.state.runtime,
                                      request.path_params["business"],
                                      request.path_params["recipient"]))


def list_windows(request: Request) -> JSONResponse:
    runtime: Runtime = request.state.runtime
    caller = authenticate(request, runtime)
    day = int(WINDOW.total_seconds())
    expiring_within = _int_param(request, "expiring_within", day, low=0, high=day)
    limit = _int_param(request, "limit", 100, low=1, high=MAX_LIMIT)
    unanswered = _bool_param(request, "unanswered")
    now = runtime.clock()
    after = open_since(now=now, margin=runtime.margin)
    with Session(runtime.engine) as session:
        rows = conversations.by_last_inbound(
            session, after=after, until=after + timedelta(seconds=expiring_within),
            unanswered=unanswered,
            accounts=sorted(caller.accounts) if caller.accounts is not None else None,
            limit=limit,
        )
    windows = [window_body(row, business=row.account, recipient=row.customer, now=now,
                           margin=runtime.margin) for row in rows]
    return JSONResponse({"windows": windows, "count": len(windows)})


LOOKUP = Route("/v1/windows/whatsapp/{business}/{recipient}", get_window, methods=["GET"])
routes = [
    LOOKUP,
    Route("/v1/windows", list_windows, methods=["GET"]),
]


# --- GET /v1/windows/whatsapp/{b}/{r} before routing ----------------------------------------
# The bots' hot path is answered as a plain ASGI handler that the app calls before Starlette's
# router and middleware (receiver/app.py), like the webhooks: the same answers, errors
# included (the app's own exception handlers make them), for a fraction of the CPU. What it
# leaves (`lookup_params` is None) goes to the router as before: other methods (405 with
# Allow), HEAD, a path that only matches with a trailing slash (the redirect), a root_path.

LOOKUP_PREFIX = "/v1/windows/whatsapp/"
Scope = dict[str, Any]


def lookup_params(scope: Scope) -> tuple[str, str] | None:
    """(business, recipient) as in the path if `answer_lookup` answers this request (a GET
    that the LOOKUP route matches, as the router would match it), else None."""
    if scope["method"] != "GET" or scope.get("root_path"):
        return None
    match = LOOKUP.path_regex.match(scope["path"])
    if match is None:
        return None
    business, recipient = match.groups()
    return business, recipient


async def answer_lookup(scope: Scope, receive: Any, send: Any, business: str,
                        recipient: str) -> None:
    """The ASGI answer to a lookup that `lookup_params` accepted."""
    async def lookup(request: Request) -> raw_response.JsonAnswer:
        return raw_response.JsonAnswer(
            await _window(request, scope["state"]["runtime"], business, recipient))

    await unrouted.answer(scope, receive, send, lookup)
