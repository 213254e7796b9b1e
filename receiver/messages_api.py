"""POST/GET /v1/messages and GET /v1/templates: how bots send and follow their replies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import _lenient
from receiver.auth import Caller, authenticate, known_caller
from receiver.errors import ApiError, BadPayload, Invalid, NotFound, PayloadTooLarge
from receiver.raw_response import JsonAnswer
from receiver.runtime import Runtime
from receiver.settings import MAX_BODY_BYTES
from receiver.windows_api import window_body
from sender import events as bot_events
from sender import outcomes, policy, validate
from sender.group_commit import Deferring, write_now
from sender.service import Call, Sender
from sender.validate import ValidationFailed
from store import db, messages, outbox, templates
from store.utc_text import iso_z

logger = logging.getLogger(__name__)

CHANNELS = ("whatsapp", "wecom", "sms")
STATUSES = ("queued", "sending", "unknown", "accepted", "sent", "delivered", "read", "failed",
            "rejected", "expired")
FALLBACKS = ("template", "sms")
WAIT_FOR_VENDOR = 5.0
SEND_PATH = "/v1/messages"
PAGE_LIMIT = 100


class Conflict(ApiError):
    status = 409
    code = "conflict"


def _request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# The vendor's SMS field names, as this API calls them.
_API_FIELDS = {"content": "sms_text", "sender_id": "sender_id"}


def _invalid(exc: ValidationFailed) -> Invalid:
    field = _API_FIELDS.get(exc.field, exc.field)
    extra: dict[str, Any] = {"field": field}
    if exc.vendor_code is not None:
        extra["vendor_code"] = exc.vendor_code
    detail = exc.detail if exc.detail.startswith(field) else f"{field}: {exc.detail}"
    return Invalid(detail, code="invalid_message", **extra)


def _has_zone(value: str) -> bool:
    """A bot's time names its zone: a zone-less one would be read as the vendor's +08:00."""
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def parse_send(body: Any) -> dict[str, Any]:
    """The request, checked against the documented rules; the normalised copy we store."""
    if not isinstance(body, dict):
        raise Invalid("The body must be a JSON object.", code="invalid_request")
    channel = body.get("channel")
    if channel not in CHANNELS:
        raise Invalid("channel must be one of whatsapp, wecom, sms.", code="invalid_request",
                      field="channel")
    fallback = body.get("fallback") or []
    if not isinstance(fallback, list) or any(f not in FALLBACKS for f in fallback):
        raise Invalid("fallback must be a list of 'template' and 'sms'.",
                      code="invalid_request", field="fallback")
    send_at = body.get("send_at")
    if send_at is not None and (not isinstance(send_at, str) or _lenient.iso(send_at) is None
                                or "T" not in send_at or not _has_zone(send_at)):
        raise Invalid("send_at must be an ISO-8601 time with its zone, e.g. "
                      "2026-11-22T10:00:00Z.", code="invalid_request", field="send_at")
    for name in ("sms_text", "reply_to", "sender_id"):
        if body.get(name) is not None and not isinstance(body.get(name), str):
            raise Invalid(f"{name} must be a string.", code="invalid_request", field=name)
    try:
        if channel == "wecom":
            for name in ("from", "to"):
                if not isinstance(body.get(name), str) or not body[name].strip():
                    raise ValidationFailed(name, f"{name} must be a wxid.")
            validate.check_wecom_messages(body.get("message"))
            sender, recipient = body["from"].strip(), body["to"].strip()
        else:
            sender = validate.check_phone(body.get("from"), field="from")
            recipient = validate.check_phone(body.get("to"), field="to")
            if channel == "sms":
                text = body.get("sms_text") or policy.message_text(body.get("message"))
                validate.check_sms(content=text, sender_id=body.get("sender_id"))
            else:
                if body.get("message") is None and body.get("template") is None:
                    raise ValidationFailed("message", "Give a message, a template, or both.")
                if body.get("message") is not None:
                    validate.check_whatsapp_message(body["message"])
                if body.get("template") is not None:
                    validate.check_template_send(body["template"])
                fallback_text = body.get("sms_text") or policy.message_text(body.get("message"))
                if "sms" in fallback and fallback_text is not None:
                    # The SMS that may go instead must fit SMS limits too, checked now.
                    validate.check_sms(content=fallback_text, sender_id=body.get("sender_id"))
    except ValidationFailed as exc:
        raise _invalid(exc) from None
    return {**body, "from": sender, "to": recipient, "fallback": fallback}


def message_body(message: Any, *, window: dict[str, Any] | None) -> dict[str, Any]:
    """The message as answered (an OutboundMessage, a plain row, or a view of one)."""
    return {
        "id": message.id,
        "channel": message.channel,
        "from": message.account,
        "to": message.recipient,
        "route": message.route,
        "status": message.status,
        "vendor_message_id": message.vendor_message_id,
        "window": window,
        "fallback_reason": message.fallback_reason,
        "fallback_of": message.fallback_of,
        "failure": ({"code": message.failure_code, "reason": message.failure_reason}
                    if message.failure_code or message.failure_reason else None),
        "flagged": message.flagged,
        "send_at": iso_z(message.send_at),
        "created_at": iso_z(message.created_at),
        "times": {name: iso_z(getattr(message, column))
                  for name, column in messages.STATUS_COLUMNS.items() if getattr(message, column)},
    }


def _window_at(runtime: Runtime, message: Any,
               last_inbound_at: datetime | None) -> dict[str, Any] | None:
    if message.channel != "whatsapp":
        return None
    conversation = SimpleNamespace(last_inbound_at=last_inbound_at, last_outbound_at=None)
    body = window_body(conversation, business=message.account,  # type: ignore[arg-type]
                       recipient=message.recipient, now=runtime.clock(), margin=runtime.margin)
    return {k: body[k] for k in ("open", "last_inbound_at", "expires_at", "seconds_left")}


def _window(session: Session, runtime: Runtime, message: Any) -> dict[str, Any] | None:
    if message.channel != "whatsapp":
        return None
    last_inbound_at, _ = outbox.route_facts(session, channel="whatsapp", account=message.account,
                                            recipient=message.recipient)
    return _window_at(runtime, message, last_inbound_at)


@dataclass(frozen=True)
class Submitted:
    """What storing a request came to: the message's id; a finished answer when there is
    nothing to send (a refusal, an idempotent repeat) or a conflict; the call to make when
    it was claimed for sending at once."""

    message_id: str | None
    answer: dict[str, Any] | None = None
    status: int = 202
    call: Call | None = None
    conflict: bool = False


def _submit(runtime: Runtime, caller: Caller, body: dict[str, Any],
            idempotency_key: str | None) -> Submitted:
    """Store the request in a transaction of its own (no sender in this process)."""
    def once() -> Submitted:
        with Session(db.writer(runtime.engine), expire_on_commit=False) as session, \
                session.begin():
            return _store(session, runtime, caller, body, idempotency_key, sender=None)
    try:
        return once()
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with the same key stored its message first (the unique
        # constraint said so): this one is its repeat, answered as such.
        return once()


def _store(session: Session, runtime: Runtime, caller: Caller, body: dict[str, Any],
           idempotency_key: str | None, *, sender: Sender | None) -> Submitted:
    """Store the message (or find the earlier one), with plain statements. With a `sender`,
    a message that can go at once is claimed for sending in this same transaction. Its row
    and its event are written at the end of a group commit's batch (nothing reads them back
    before; a keyed request first writes what the batch holds, to find its key's message)."""
    now = runtime.clock()
    config = runtime.settings.send_config()
    request_hash = _request_hash(body)
    writes = Deferring(session)
    if idempotency_key:
        write_now(session)
        earlier = outbox.row_by_idempotency_key(session, api_key_id=caller.key_id,
                                                key=idempotency_key)
        if earlier is not None:
            if earlier.request_hash != request_hash:
                return Submitted(earlier.id, conflict=True)
            answer = earlier.first_answer or message_body(earlier, window=None)
            return Submitted(earlier.id, answer, int(answer.get("_status", 202)))
    message_id = outcomes.new_message_id()
    fields = outbox.NEW_ROW | {
        "id": message_id, "channel": body["channel"], "account": body["from"],
        "recipient": body["to"], "status": "queued", "request": body,
        "api_key_id": caller.key_id, "idempotency_key": idempotency_key,
        "request_hash": request_hash, "reply_to": body.get("reply_to"),
        "client_ref": message_id, "created_at": now, "status_at": now,
    }
    send_at = _lenient.iso(body.get("send_at"))
    if send_at is not None and send_at > now:
        fields["send_at"] = fields["next_attempt_at"] = send_at
        outbox.add_row(writes, fields)  # type: ignore[arg-type]
        return Submitted(message_id)
    situation = outcomes.situation(session, channel=fields["channel"], account=fields["account"],
                                   recipient=fields["recipient"], config=config)
    message = SimpleNamespace(**fields)
    decision = policy.choose_route(outcomes.send_request(message),  # type: ignore[arg-type]
                                   situation, now=now, margin=config.margin)
    fields["next_attempt_at"] = now
    if decision.refused:
        # Kept, so reports can count the refusals.
        fields.update(status="rejected", rejected_at=now, failure_code=decision.reason,
                      failure_reason="refused before sending")
        message = SimpleNamespace(**fields)
        reason = decision.reason or "window_closed"
        answer = {"error": reason, "detail": _REFUSALS.get(reason, reason),
                  **message_body(message, window=_window_at(runtime, message,
                                                             situation.last_inbound_at)),
                  "_status": 409}
        fields["first_answer"] = answer
        outbox.add_row(writes, fields)  # type: ignore[arg-type]
        bot_events.message_event(writes, "message.refused", message,  # type: ignore[arg-type]
                                 now=now, push=config.push_events, reason=reason)
        return Submitted(message_id, answer, 409)
    fields["route"], fields["fallback_reason"] = decision.route, decision.reason
    bot_events.message_event(writes, "message.route",  # type: ignore[arg-type]
                             SimpleNamespace(**fields), now=now, push=config.push_events)
    call = sender.claim_new(session, fields, decision) if sender is not None else None
    outbox.add_row(writes, fields)  # type: ignore[arg-type]
    return Submitted(message_id, call=call)


_REFUSALS = {
    "window_closed": "The WhatsApp window is closed and the request allows no usable fallback.",
    "opted_out": "The contact opted out of marketing templates and SMS.",
    "template_not_usable": "The template is not APPROVED, or its variables do not match.",
}


_UNREAD: Any = object()


def _answer_body(runtime: Runtime, session: Session, message: Any, *,
                 last_inbound_at: datetime | None = _UNREAD) -> dict[str, Any]:
    """The answer to the POST; `last_inbound_at`: the conversation's, if already read."""
    window = (_window(session, runtime, message) if last_inbound_at is _UNREAD
              else _window_at(runtime, message, last_inbound_at))
    return message_body(message, window=window)


def _answer_in(session: Session, runtime: Runtime, message_id: str) -> dict[str, Any]:
    """The message's state so far, kept as the first answer unless one was kept already."""
    message = outbox.get(session, message_id, for_update=True)
    if message is None:
        raise NotFound("No such message.")
    answer = _answer_body(runtime, session, message)
    if message.first_answer is None:
        message.first_answer = {**answer, "_status": 202}
        session.add(message)
    return answer


def _answer(runtime: Runtime, message_id: str) -> dict[str, Any]:
    with Session(db.writer(runtime.engine)) as session, session.begin():
        return _answer_in(session, runtime, message_id)


def _public(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if not k.startswith("_")}


def _attempt_done(runtime: Runtime) -> Any:
    def done(attempt: asyncio.Future[None]) -> None:
        runtime.background.discard(attempt)
        if not attempt.cancelled() and attempt.exception() is not None:
            logger.error("a send attempt failed; the outbox worker will retry it",
                         exc_info=attempt.exception(), extra={"action": "send_attempt_failed"})
    return done


async def post_message(request: Request) -> JsonAnswer:
    """POST /v1/messages. The app calls it before routing (`SEND_PATH`, receiver/app.py)."""
    runtime: Runtime = request.state.runtime
    # A configured key, or a stored one verified a moment ago, costs no threadpool hop.
    caller = (known_caller(request, runtime)
              or await run_in_threadpool(authenticate, request, runtime))
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge("The body is over 1 MiB.")
    try:
        body = parse_send(_lenient.load_json(raw))
    except BadPayload as exc:
        raise BadPayload(exc.detail, code="invalid_json") from None
    caller.require(body["from"])
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 255:
        raise Invalid("Idempotency-Key must be 1 to 255 characters.", code="invalid_request",
                      field="Idempotency-Key")
    sender = runtime.sender
    if sender is None:  # nothing sends from this process: store it, the outbox worker sends
        submitted = await run_in_threadpool(_submit, runtime, caller, body, key)
        attempt = None
    else:
        submitted, attempt = await _submit_and_send(runtime, sender, caller, body, key)
    if submitted.conflict:
        raise Conflict("This Idempotency-Key was used with another body.",
                       code="idempotency_conflict")
    if submitted.answer is not None:
        return JsonAnswer(_public(submitted.answer), submitted.status)
    assert submitted.message_id is not None
    if attempt is not None:
        # Wait for the vendor a little; the attempt goes on after we answer if it is slow.
        # Its answer was kept in the transaction that recorded the vendor's.
        await asyncio.wait({attempt}, timeout=WAIT_FOR_VENDOR)
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            answer = attempt.result()
            if answer is not None:
                return JsonAnswer(answer, 202)
    if sender is None:
        answer = await run_in_threadpool(_answer, runtime, submitted.message_id)
    else:
        answer = await sender.run(partial(_answer_in, runtime=runtime,
                                          message_id=submitted.message_id))
    return JsonAnswer(answer, 202)


async def _submit_and_send(runtime: Runtime, sender: Sender, caller: Caller,
                           body: dict[str, Any], key: str | None,
                           ) -> tuple[Submitted, asyncio.Future[Any] | None]:
    """Store the request (sharing a commit with other sends) and, once it is committed,
    start its vendor call: started by the commit, not by this request, so a request that
    goes away between the two leaves no claimed message behind unsent."""
    started: list[asyncio.Future[Any]] = []

    def send(submitted: Submitted) -> None:
        if submitted.call is None:
            return
        attempt = asyncio.ensure_future(sender.send_claimed(
            submitted.call, answer=partial(_answer_body, runtime)))
        runtime.background.add(attempt)
        attempt.add_done_callback(_attempt_done(runtime))
        started.append(attempt)

    store = partial(_store, runtime=runtime, caller=caller, body=body, idempotency_key=key,
                    sender=sender)
    try:
        submitted = await sender.run(store, then=send, defers=True)
    except IntegrityError:
        if key is None:
            raise
        # A concurrent request with the same key stored its message first (the unique
        # constraint said so): this one is its repeat, answered as such.
        submitted = await sender.run(store, then=send, defers=True)
    return submitted, (started[0] if started else None)


def get_message(request: Request) -> JSONResponse:
    runtime: Runtime = request.state.runtime
    caller = authenticate(request, runtime)
    with Session(runtime.engine) as session:
        message_id = request.path_params["message_id"]
        message = outbox.get(session, message_id) if "\x00" not in message_id else None
        if message is None or not caller.may_see(message.account):
            raise NotFound("No such message.")
        body = message_body(message, window=_window(session, runtime, message))
        events = messages.events_for(session, message.id)
    body["events"] = [
        {"status": e.status, "at": iso_z(e.occurred_at), "received_at": iso_z(e.received_at),
         "failure": ({"code": e.failure_code, "reason": e.failure_reason}
                     if e.failure_code or e.failure_reason else None)}
        for e in events
    ]
    return JSONResponse(body)


def _cursor(raw: str | None) -> tuple[datetime, str] | None:
    if not raw:
        return None
    try:
        created, _, message_id = base64.urlsafe_b64decode(raw.encode()).decode().partition("|")
        at = datetime.fromisoformat(created)
        # Ours always name their zone and hold an id; a forged one must not reach the query.
        if at.tzinfo is None or not message_id or "\x00" in message_id:
            raise ValueError("not a cursor of ours")
        return at.astimezone(UTC), message_id
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise Invalid("cursor is not one this API gave out.", code="invalid_parameter",
                      field="cursor") from None


def _text_param(request: Request, name: str) -> str | None:
    """A free-text query parameter; NUL (which no stored value holds, and PostgreSQL refuses
    to compare) is a 422."""
    value = request.query_params.get(name) or None
    if value is not None and "\x00" in value:
        raise Invalid(f"{name} must not contain NUL characters.", code="invalid_parameter",
                      field=name)
    return value


def list_messages(request: Request) -> JSONResponse:
    runtime: Runtime = request.state.runtime
    caller = authenticate(request, runtime)
    params = request.query_params
    channel = params.get("channel") or None
    if channel is not None and channel not in CHANNELS:
        raise Invalid("channel must be one of whatsapp, wecom, sms.", code="invalid_parameter",
                      field="channel")
    since = _lenient.iso(params.get("since")) if params.get("since") else None
    if params.get("since") and since is None:
        raise Invalid("since must be an ISO-8601 time.", code="invalid_parameter", field="since")
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}.", code="invalid_parameter",
                      field="status")
    with Session(runtime.engine) as session:
        rows = outbox.page(
            session, channel=channel, to=_text_param(request, "to"), status=status, since=since,
            accounts=sorted(caller.accounts) if caller.accounts is not None else None,
            after=_cursor(params.get("cursor")), limit=PAGE_LIMIT + 1,
        )
    more = len(rows) > PAGE_LIMIT
    rows = rows[:PAGE_LIMIT]
    cursor = None
    if more:
        last = rows[-1]
        cursor = base64.urlsafe_b64encode(
            f"{last.created_at.isoformat()}|{last.id}".encode()).decode()
    return JSONResponse({"messages": [message_body(m, window=None) for m in rows],
                         "next_cursor": cursor})


def list_templates(request: Request) -> JSONResponse:
    runtime: Runtime = request.state.runtime
    authenticate(request, runtime)
    with Session(runtime.engine) as session:
        rows = templates.all_templates(session)
    return JSONResponse({"templates": [
        {"name": t.name, "language": t.language, "status": t.status, "category": t.category,
         "vendor_template_id": t.vendor_template_id, "components": t.components,
         "reason": t.reason, "status_at": iso_z(t.status_at), "synced_at": iso_z(t.synced_at)}
        for t in rows
    ]})


routes = [
    Route(SEND_PATH, post_message, methods=["POST"]),
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages/{message_id}", get_message, methods=["GET"]),
    Route("/v1/templates", list_templates, methods=["GET"]),
]
