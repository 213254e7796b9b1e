"""POST/GET /v1/messages and GET /v1/templates: how bots send and follow their replies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import _lenient
from receiver.auth import Caller, authenticate
from receiver.errors import ApiError, BadPayload, Invalid, NotFound, PayloadTooLarge
from receiver.runtime import Runtime
from receiver.settings import MAX_BODY_BYTES
from receiver.windows_api import iso, window_body
from sender import events as bot_events
from sender import outcomes, policy, validate
from sender.validate import ValidationFailed
from store import conversations, db, messages, outbox, templates
from store.models import OutboundMessage

logger = logging.getLogger(__name__)

CHANNELS = ("whatsapp", "wecom", "sms")
STATUSES = ("queued", "sending", "unknown", "accepted", "sent", "delivered", "read", "failed",
            "rejected", "expired")
FALLBACKS = ("template", "sms")
WAIT_FOR_VENDOR = 5.0
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


def message_body(message: OutboundMessage, *, window: dict[str, Any] | None) -> dict[str, Any]:
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
        "send_at": iso(message.send_at),
        "created_at": iso(message.created_at),
        "times": {name: iso(getattr(message, column))
                  for name, column in messages.STATUS_COLUMNS.items() if getattr(message, column)},
    }


def _window(session: Session, runtime: Runtime, message: OutboundMessage) -> dict[str, Any] | None:
    if message.channel != "whatsapp":
        return None
    conversation = conversations.get(session, channel="whatsapp", account=message.account,
                                     customer=message.recipient)
    body = window_body(conversation, business=message.account, recipient=message.recipient,
                       now=runtime.clock(), margin=runtime.margin)
    return {k: body[k] for k in ("open", "last_inbound_at", "expires_at", "seconds_left")}


def _submit(runtime: Runtime, caller: Caller, body: dict[str, Any],
            idempotency_key: str | None) -> tuple[str, dict[str, Any] | None, int]:
    try:
        return _submit_once(runtime, caller, body, idempotency_key)
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with the same key stored its message first (the unique
        # constraint said so): this one is its repeat, answered as such.
        return _submit_once(runtime, caller, body, idempotency_key)


def _submit_once(runtime: Runtime, caller: Caller, body: dict[str, Any],
                 idempotency_key: str | None) -> tuple[str, dict[str, Any] | None, int]:
    """Store the message (or find the earlier one). Returns its id, and a finished answer
    when there is nothing to send (a refusal, or an idempotent repeat)."""
    now = runtime.clock()
    config = runtime.settings.send_config()
    request_hash = _request_hash(body)
    with Session(db.writer(runtime.engine), expire_on_commit=False) as session, session.begin():
        if idempotency_key:
            earlier = outbox.by_idempotency_key(session, api_key_id=caller.key_id,
                                                key=idempotency_key)
            if earlier is not None:
                if earlier.request_hash != request_hash:
                    raise Conflict("This Idempotency-Key was used with another body.",
                                   code="idempotency_conflict")
                answer = earlier.first_answer or message_body(earlier, window=None)
                return earlier.id, answer, int(answer.get("_status", 202))
        message = OutboundMessage(
            id=outcomes.new_message_id(), channel=body["channel"], account=body["from"],
            recipient=body["to"], status="queued", request=body, api_key_id=caller.key_id,
            idempotency_key=idempotency_key, request_hash=request_hash,
            reply_to=body.get("reply_to"), created_at=now, status_at=now,
        )
        message.client_ref = message.id
        send_at = _lenient.iso(body.get("send_at"))
        if send_at is not None and send_at > now:
            message.send_at, message.next_attempt_at = send_at, send_at
            session.add(message)
            return message.id, None, 202
        situation = outcomes.situation(session, channel=message.channel, account=message.account,
                                       recipient=message.recipient, config=config)
        decision = policy.choose_route(outcomes.send_request(message), situation, now=now,
                                       margin=config.margin)
        message.next_attempt_at = now
        if decision.refused:
            # Kept, so reports can count the refusals.
            message.status, message.rejected_at = "rejected", now
            message.failure_code = decision.reason
            message.failure_reason = "refused before sending"
            session.add(message)
            session.flush()
            answer = message_body(message, window=_window(session, runtime, message))
            status = 409
            reason = decision.reason or "window_closed"
            answer = {"error": reason, "detail": _REFUSALS.get(reason, reason), **answer,
                      "_status": status}
            message.first_answer = answer
            bot_events.message_event(session, "message.refused", message, now=now,
                                     push=config.push_events, reason=reason)
            return message.id, answer, status
        message.route, message.fallback_reason = decision.route, decision.reason
        session.add(message)
        bot_events.message_event(session, "message.route", message, now=now,
                                 push=config.push_events)
        return message.id, None, 202


_REFUSALS = {
    "window_closed": "The WhatsApp window is closed and the request allows no usable fallback.",
    "opted_out": "The contact opted out of marketing templates and SMS.",
    "template_not_usable": "The template is not APPROVED, or its variables do not match.",
}


def _answer(runtime: Runtime, message_id: str) -> dict[str, Any]:
    with Session(db.writer(runtime.engine)) as session, session.begin():
        message = outbox.get(session, message_id, for_update=True)
        if message is None:
            raise NotFound("No such message.")
        answer = message_body(message, window=_window(session, runtime, message))
        if message.first_answer is None:
            message.first_answer = {**answer, "_status": 202}
            session.add(message)
        return answer


def _public(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if not k.startswith("_")}


def _attempt_done(runtime: Runtime) -> Any:
    def done(attempt: asyncio.Future[None]) -> None:
        runtime.background.discard(attempt)
        if not attempt.cancelled() and attempt.exception() is not None:
            logger.error("a send attempt failed; the outbox worker will retry it",
                         exc_info=attempt.exception(), extra={"action": "send_attempt_failed"})
    return done


async def post_message(request: Request) -> JSONResponse:
    runtime: Runtime = request.state.runtime
    caller = await run_in_threadpool(authenticate, request, runtime)
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
    message_id, finished, status = await run_in_threadpool(_submit, runtime, caller, body, key)
    if finished is not None:
        return JSONResponse(_public(finished), status_code=status)
    sender = runtime.sender
    if sender is not None:
        attempt = asyncio.ensure_future(sender.deliver(message_id))
        runtime.background.add(attempt)
        attempt.add_done_callback(_attempt_done(runtime))
        # Wait for the vendor a little; the attempt goes on after we answer if it is slow.
        await asyncio.wait({attempt}, timeout=WAIT_FOR_VENDOR)
    answer = await run_in_threadpool(_answer, runtime, message_id)
    return JSONResponse(answer, status_code=202)


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
        {"status": e.status, "at": iso(e.occurred_at), "received_at": iso(e.received_at),
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
         "reason": t.reason, "status_at": iso(t.status_at), "synced_at": iso(t.synced_at)}
        for t in rows
    ]})


routes = [
    Route("/v1/messages", post_message, methods=["POST"]),
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages/{message_id}", get_message, methods=["GET"]),
    Route("/v1/templates", list_templates, methods=["GET"]),
]
