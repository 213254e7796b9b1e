"""Applying parsed events to the store, each exactly once (its key is claimed first).

Runs inside the caller's transaction; never commits. `apply_many` applies a batch of bodies
with the per-batch work of store/batch.py (one claim for all keys, inserts deferred to one
executemany each); `apply_events` one body on its own, each event claimed as it comes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from receiver.events import ChatSeen, Event, Owner, StatusReported, TemplateChanged, Unhandled
from receiver.settings import Settings
from sender import events as bot_events
from sender import outcomes, policy
from sender.outcomes import SendConfig
from sender.window import inbound_time
from store import batch as batch_module
from store import db, inbox, messages, optouts, outbox, templates
from store.models import InboxBody, OutboundMessage

logger = logging.getLogger(__name__)

# What a body's state says, most telling first.
_STATE_ORDER = ("flagged", "applied", "duplicate", "stored")


def is_owned(owner: Owner, settings: Settings) -> bool:
    if owner.kind == "itnio_whatsapp":
        return settings.is_itnio_app_configured(owner.ref, channel="whatsapp")
    if owner.kind == "itnio_sms":
        return settings.is_itnio_app_configured(owner.ref, channel="sms")
    return settings.is_yzj_account_configured(owner.ref)


def failure_detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def apply_guarded(session: Session, *, inbox_body_id: int | None, received_at: datetime,
                  events: list[Event], settings: Settings,
                  now: datetime) -> tuple[str, str | None]:
    """Apply one stored body's events in a savepoint; its state, and why it failed. A failure
    that a retry of the whole transaction may cure (a deadlock) is raised; any other rolls
    back only this body's effects and makes it `failed`, to be replayed once mended."""
    try:
        with session.begin_nested():
            return apply_events(session, events=events, inbox_body_id=inbox_body_id,
                                received_at=received_at, settings=settings, now=now), None
    except Exception as exc:
        if db.is_transient(exc):
            raise
        logger.error("applying a webhook body failed; kept for replay", exc_info=exc,
                     extra={"action": "webhook_apply_failed", "inbox_body_id": inbox_body_id})
        return "failed", failure_detail(exc)


def apply_body(session: Session, body: InboxBody, *, events: list[Event], settings: Settings,
               now: datetime) -> str:
    """`apply_guarded` for a body loaded as an object: its detail or applied_at set."""
    state, failure = apply_guarded(session, inbox_body_id=body.id,
                                   received_at=body.received_at, events=events,
                                   settings=settings, now=now)
    if failure is not None:
        body.detail = failure
    else:
        body.applied_at = now
    return state


@dataclass
class Batch:
    """What a batch learnt up front (store/batch.py), and the inserts it holds back."""

    claimed: set[str]  # keys this batch claimed; the first event with the key takes it
    known_refs: set[str]  # vendor ids and client refs some outbound message carries
    may_adopt: bool  # some WhatsApp send is held as unknown
    deferred: batch_module.Deferred = field(default_factory=batch_module.Deferred)


def _to_apply(event: Event, settings: Settings) -> bool:
    return not isinstance(event, Unhandled) and is_owned(event.owner, settings)


def _client_ref(event: StatusReported) -> str | None:
    return (outcomes.wecom_message_ref(event.client_ref) if event.channel == "wecom"
            else event.client_ref)


def apply_many(session: Session, bodies: list[tuple[int, datetime, list[Event]]], *,
               settings: Settings, now: datetime) -> list[str]:
    """Apply the events of many (inbox_body_id, received_at, events) bodies, in order; the
    state of each. Same effects as `apply_events` body after body, in fewer statements."""
    wanted = [(event.key, body_id) for body_id, _, events in bodies for event in events
              if _to_apply(event, settings)]
    statuses = [event for _, _, events in bodies for event in events
                if isinstance(event, StatusReported)]
    context = Batch(
        claimed=batch_module.claim_keys(session, wanted, now=now),
        known_refs=batch_module.known_refs(
            session,
            vendor_ids=[(e.channel, e.vendor_message_id) for e in statuses if e.vendor_message_id],
            client_refs=[(e.channel, ref) for e in statuses if (ref := _client_ref(e))]),
        may_adopt=(any(e.channel == "whatsapp" for e in statuses)
                   and batch_module.any_unknown_whatsapp(session)),
    )
    states = [apply_events(session, events=events, inbox_body_id=body_id,
                           received_at=received_at, settings=settings, now=now, batch=context)
              for body_id, received_at, events in bodies]
    context.deferred.flush(session)
    return states


def _claim(session: Session, event: Event, *, inbox_body_id: int | None, now: datetime,
           batch: Batch | None) -> bool:
    if batch is None:
        return inbox.claim_key(session, key=event.key, inbox_body_id=inbox_body_id, now=now)
    if event.key in batch.claimed:
        batch.claimed.discard(event.key)  # a second event with the key is a duplicate
        return True
    return False


def apply_events(session: Session, *, events: list[Event], inbox_body_id: int | None,
                 received_at: datetime, settings: Settings, now: datetime,
                 batch: Batch | None = None) -> str:
    """Apply what is new in `events`; the body's resulting state."""
    outcomes = set()
    for event in events:
        if isinstance(event, Unhandled):
            outcomes.add("stored")
        elif not is_owned(event.owner, settings):
            logger.warning("event for an account not configured: stored, not applied",
                           extra={"action": "webhook_flagged", "owner_kind": event.owner.kind})
            outcomes.add("flagged")
        elif not _claim(session, event, inbox_body_id=inbox_body_id, now=now, batch=batch):
            outcomes.add("duplicate")
        else:
            _apply(session, event, inbox_body_id=inbox_body_id, received_at=received_at,
                   config=settings.send_config(), now=now, batch=batch)
            outcomes.add("applied")
    return next((state for state in _STATE_ORDER if state in outcomes), "stored")


def _apply(session: Session, event: Event, *, inbox_body_id: int | None,
           received_at: datetime, config: SendConfig, now: datetime,
           batch: Batch | None) -> None:
    if isinstance(event, ChatSeen):
        _apply_chat(session, event, inbox_body_id=inbox_body_id, received_at=received_at,
                    push=config.push_events, now=now, batch=batch)
    elif isinstance(event, StatusReported):
        _apply_status(session, event, inbox_body_id=inbox_body_id, received_at=received_at,
                      config=config, now=now, batch=batch)
    elif isinstance(event, TemplateChanged):
        if batch is not None:
            batch.deferred.flush(session)
        templates.record_status(
            session, vendor_template_id=event.vendor_template_id, name=event.name,
            language=event.language, status=event.status, reason=event.reason,
            at=inbound_time(event.occurred_at, received_at=received_at),
        )


def _apply_chat(session: Session, event: ChatSeen, *, inbox_body_id: int | None,
                received_at: datetime, push: bool, now: datetime,
                batch: Batch | None) -> None:
    # A timestamp in the future is clamped to when we received the message.
    at = inbound_time(event.sent_at, received_at=received_at)
    # In a batch, upserted with the batch's others: the conversation's id is known then.
    conversation_id: int | tuple[str, str, str] = (event.channel, event.account, event.customer)
    deferred = batch.deferred if batch is not None else batch_module.Deferred()
    if event.direction == "in":
        deferred.inbound.append({
            "channel": event.channel, "account": event.account, "customer": event.customer,
            "customer_name": event.customer_name, "at": at,
            "message_id": event.vendor_message_id, "now": now})
        if event.channel in ("whatsapp", "sms"):
            _record_opt_choice(deferred, event, at=at)
        deferred.bot_events.append(bot_events.inbound_row(
            channel=event.channel, account=event.account, customer=event.customer,
            message_id=event.vendor_message_id, msg_type=event.msg_type, text=event.text,
            content=event.content, sent_at=at, customer_name=event.customer_name, now=now,
            push=push))
    else:
        deferred.outbound.append({
            "channel": event.channel, "account": event.account, "customer": event.customer,
            "at": at, "now": now})
    deferred.chat_messages.append({
        "conversation_id": conversation_id, "channel": event.channel,
        "direction": event.direction, "vendor_message_id": event.vendor_message_id,
        "msg_type": event.msg_type, "text": event.text, "content": event.content,
        "sent_at": at, "received_at": received_at, "inbox_body_id": inbox_body_id,
    })
    if batch is None:
        deferred.flush(session)


def _record_opt_choice(deferred: batch_module.Deferred, event: ChatSeen, *,
                       at: datetime) -> None:
    if policy.is_stop_word(event.text) or policy.is_start_word(event.text):
        deferred.opt_choices.append(optouts.choice(
            customer=event.customer, opted_out=policy.is_stop_word(event.text),
            source=f"{event.channel}:{(event.text or '').strip()[:40]}", at=at))


def _apply_status(session: Session, event: StatusReported, *, inbox_body_id: int | None,
                  received_at: datetime, config: SendConfig, now: datetime,
                  batch: Batch | None) -> None:
    at = inbound_time(event.occurred_at, received_at=received_at)
    client_ref = _client_ref(event)
    fields = {
        "channel": event.channel, "vendor_message_id": event.vendor_message_id,
        "client_ref": client_ref, "message_id": None, "status": event.status,
        "occurred_at": at, "received_at": received_at, "failure_code": event.failure_code,
        "failure_reason": event.failure_reason,
        "detail": {**event.detail, "billable": event.billable, "api_send_id": event.client_ref,
                   "conversation_type": event.conversation_type, "cost": event.cost},
        "inbox_body_id": inbox_body_id,
    }
    if batch is not None:
        ours = (event.vendor_message_id in batch.known_refs or client_ref in batch.known_refs
                or (batch.may_adopt and event.channel == "whatsapp"))
        if not ours:  # about no message of ours: kept, for when our call's answer names it
            batch.deferred.status_events.append(fields)
            return
        batch.deferred.flush(session)
    message = messages.find_outbound(session, channel=event.channel,
                                     vendor_message_id=event.vendor_message_id,
                                     client_ref=client_ref)
    if message is None and event.channel == "whatsapp" and event.vendor_message_id:
        message = _adopt_unknown(session, event, at=at)
        if message is not None and batch is not None:
            batch.known_refs.add(event.vendor_message_id)
    row = messages.add_status_event(session, **{**fields,
                                                "message_id": message.id if message else None})
    if message is not None:
        outcomes.apply_event(session, message, row, config=config, now=now)
    # else kept: applied when our own call's answer names this message


def _adopt_unknown(session: Session, event: StatusReported, *,
                   at: datetime) -> OutboundMessage | None:
    """A push for a message id we never learnt: our call timed out after the vendor took it.
    The oldest message held as unknown to that recipient is the one; it learns its id."""
    account, recipient = event.detail.get("from"), event.detail.get("recipient")
    if not account or not recipient:
        return None
    message = outbox.unknown_for(session, channel="whatsapp", account=account,
                                 recipient=recipient, sent_before=at)
    if message is not None:
        message.vendor_message_id = event.vendor_message_id
        session.add(message)
    return message
