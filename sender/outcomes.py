"""What a vendor's word does to an outbound message (SPEC "Delivery status"), and what
follows from it: the fallback re-send after 131047, the opt-out after 131050.

Runs in the caller's transaction (a webhook's, or the sender's when the vendor answers).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlmodel import Session

from sender import events as bot_events
from sender import policy
from sender import status as status_rules
from sender.validate import count_variables
from store import messages, optouts, outbox, templates
from store.models import OutboundMessage, StatusEvent
from store.utc_text import iso_z

logger = logging.getLogger(__name__)

WINDOW_CLOSED_CODE = "131047"
OPTED_OUT_CODE = "131050"


@dataclass(frozen=True)
class SendConfig:
    margin: timedelta
    fallback_template: tuple[str, str] | None = None
    wecom_confirm: timedelta = timedelta(seconds=600)
    wecom_gap: timedelta = timedelta(seconds=3)  # 60 s / the staff account's messages a minute
    # Whether events are queued for the bot's webhook (REPLYWINDOW_BOT_WEBHOOK_URL is set).
    push_events: bool = False
    # An unanswered open window closing within this long is announced (window.expiring).
    expiring_warning: timedelta = timedelta(hours=1)

    @staticmethod
    def parse_fallback(value: str | None) -> tuple[str, str] | None:
        if not value or ":" not in value:
            return None
        name, _, language = value.partition(":")
        return (name.strip(), language.strip()) if name.strip() and language.strip() else None


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def wecom_part_id(message_id: str, index: int) -> str:
    """The api_send_id of part `index` of a WeCom message (a request may hold several)."""
    return f"{message_id}-{index}"


def wecom_message_ref(api_send_id: str | None) -> str | None:
    """The message id an api_send_id of ours names; foreign ids are returned unchanged."""
    if api_send_id and api_send_id.startswith("msg_") and "-" in api_send_id:
        return api_send_id.rpartition("-")[0]
    return api_send_id


def template_views(session: Session) -> dict[tuple[str, str], policy.TemplateView]:
    views = {}
    for row in templates.all_templates(session):
        components = row.components if isinstance(row.components, dict) else {}
        body = components.get("body") if isinstance(components.get("body"), dict) else None
        header = components.get("header") if isinstance(components.get("header"), dict) else None
        views[(row.name, row.language)] = policy.TemplateView(
            name=row.name, language=row.language, status=row.status, category=row.category,
            body_variables=count_variables(body.get("text")) if body else None,
            header_variables=count_variables(header.get("text")) if header else None,
        )
    return views


class _Templates(Mapping[tuple[str, str], policy.TemplateView]):
    """The templates, read in the caller's transaction the first time a rule asks for one:
    a reply inside the window never needs them."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._views: dict[tuple[str, str], policy.TemplateView] | None = None

    def _loaded(self) -> dict[tuple[str, str], policy.TemplateView]:
        if self._views is None:
            self._views = template_views(self._session)
        return self._views

    def __getitem__(self, key: tuple[str, str]) -> policy.TemplateView:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def situation(session: Session, *, channel: str, account: str, recipient: str,
              config: SendConfig) -> policy.Situation:
    last_inbound_at, opted_out = outbox.route_facts(session, channel=channel, account=account,
                                                    recipient=recipient)
    return policy.Situation(
        last_inbound_at=last_inbound_at, opted_out=opted_out,
        templates=_Templates(session) if channel == "whatsapp" else {},  # type: ignore[arg-type]
        fallback_template=config.fallback_template,
    )


def send_request(message: OutboundMessage) -> policy.SendRequest:
    body: dict[str, Any] = message.request
    return policy.SendRequest(
        channel=message.channel, message=body.get("message"), template=body.get("template"),
        fallback=tuple(body.get("fallback") or ()), sms_text=body.get("sms_text"),
    )


def apply_status(message: Any, *, status: str, at: datetime, failure_code: str | None = None,
                 failure_reason: str | None = None, billable: bool | None = None,
                 conversation_type: str | None = None,
                 cost: dict[str, Any] | None = None) -> status_rules.Transition:
    """What a reported status does to the message's fields (an ORM object or a MessageView)."""
    transition = status_rules.advance(message.status, status, at=at,
                                      stamped=messages.stamped_statuses(message))
    messages.set_status(message, status=transition.status, stamps=transition.stamps,
                        flagged=transition.flagged)
    if status in ("failed", "rejected") and transition.status == status:
        message.failure_code, message.failure_reason = failure_code, failure_reason
    if billable is not None:
        message.billable = billable
    message.conversation_type = conversation_type or message.conversation_type
    message.cost = cost or message.cost
    return transition


def announce_status(session: Session, message: Any, transition: status_rules.Transition, *,
                    previous: str, at: datetime, config: SendConfig) -> None:
    if message.status != previous or transition.flagged:
        bot_events.message_event(session, "message.status", message, now=at,
                                 push=config.push_events, previous=previous,
                                 at=iso_z(at))


def record_status(session: Session, message: OutboundMessage, *, status: str, at: datetime,
                  config: SendConfig, failure_code: str | None = None,
                  failure_reason: str | None = None,
                  billable: bool | None = None, conversation_type: str | None = None,
                  cost: dict[str, Any] | None = None) -> status_rules.Transition:
    previous = message.status
    transition = apply_status(message, status=status, at=at, failure_code=failure_code,
                              failure_reason=failure_reason, billable=billable,
                              conversation_type=conversation_type, cost=cost)
    session.add(message)
    announce_status(session, message, transition, previous=previous, at=at, config=config)
    return transition


class MessageView(SimpleNamespace):
    """A message as a plain row read with Core, changed in memory and written back with one
    UPDATE of what changed: the send path's common cases, without the ORM's cost."""

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> MessageView:
        view = cls(**row)
        view._original = dict(row)  # what was read; columns only are ever written
        return view

    def changes(self) -> dict[str, Any]:
        original: dict[str, Any] = self.__dict__["_original"]
        return {name: value for name, value in vars(self).items()
                if name in original and original[name] is not value and original[name] != value}

    def save(self, session: Any) -> None:
        """One UPDATE of what changed (`session`: a Session, or a group_commit.Deferring)."""
        changes = self.changes()
        outbox.update_row(session, self.id, changes)
        self.__dict__["_original"].update(changes)


def apply_event(session: Session, message: OutboundMessage, event: StatusEvent, *,
                config: SendConfig, now: datetime) -> None:
    """Apply a stored status event to its message, and what follows from a failure."""
    detail = event.detail or {}
    transition = record_status(
        session, message, status=event.status, at=event.occurred_at, config=config,
        failure_code=event.failure_code, failure_reason=event.failure_reason,
        billable=detail.get("billable"), conversation_type=detail.get("conversation_type"),
        cost=detail.get("cost"),
    )
    if event.status == "failed" and transition.status == "failed":
        after_failure(session, message, code=event.failure_code, config=config, now=now)


def after_failure(session: Session, message: OutboundMessage, *, code: str | None,
                  config: SendConfig, now: datetime) -> OutboundMessage | None:
    """131050: the contact opted out. 131047 on a custom message: re-send by the fallback
    the request allowed (a new message, linked to this one). Returns the re-send, if any."""
    if code == OPTED_OUT_CODE and message.channel == "whatsapp" and message.route != "sms":
        optouts.record(session, customer=message.recipient, opted_out=True,
                       source=f"vendor:{OPTED_OUT_CODE}", at=now)
        return None
    if code != WINDOW_CLOSED_CODE or message.route != "custom" or message.channel != "whatsapp":
        return None
    request = send_request(message)
    if not request.fallback:
        return None
    decision = policy.choose_route(
        request, situation(session, channel=message.channel, account=message.account,
                           recipient=message.recipient, config=config),
        now=now, margin=config.margin, after_custom_failed=True,
    )
    if decision.refused:
        return None
    resend = OutboundMessage(
        id=new_message_id(), channel=message.channel, account=message.account,
        recipient=message.recipient, conversation_id=message.conversation_id,
        route=decision.route, status="queued", request=message.request,
        api_key_id=message.api_key_id, reply_to=message.reply_to, fallback_of=message.id,
        fallback_reason="window_closed", client_ref=None, next_attempt_at=now,
        created_at=now, status_at=now,
    )
    resend.client_ref = resend.id
    session.add(resend)
    bot_events.message_event(session, "message.fallback", resend, now=now,
                             push=config.push_events)
    logger.info("custom message refused for a closed window; re-sent by fallback",
                extra={"action": "fallback_resend", "message_id": message.id,
                       "resend_id": resend.id, "route": decision.route})
    return resend


def attach_orphans(session: Session, message: OutboundMessage, *, config: SendConfig,
                   now: datetime) -> int:
    """Apply the status events that arrived before the vendor's answer named this message."""
    events = outbox.orphan_events(session, channel=messages.delivery_channel(message),
                                  vendor_message_id=message.vendor_message_id,
                                  client_ref=message.client_ref)
    for event in events:
        event.message_id = message.id
        session.add(event)
        apply_event(session, message, event, config=config, now=now)
    return len(events)


def adopt_orphans(session: Session, message: OutboundMessage, *, since: datetime,
                  config: SendConfig, now: datetime) -> int:
    """A WhatsApp message just held as unknown (its call timed out, or its sender died) has
    no vendor id. Pushes that came in while the call was out, for an id no message has, from
    this business to this recipient, are most likely about it: it takes the id of the earliest
    and they are applied. (Pushes that come later are matched in receiver/apply.py.) Not
    while another message to the recipient is in a call: they may be that one's."""
    if messages.delivery_channel(message) != "whatsapp" or message.vendor_message_id:
        return 0
    if outbox.others_sending(session, message=message):
        return 0
    for event in outbox.orphans_since(session, channel="whatsapp", since=since):
        detail = event.detail or {}
        if detail.get("from") == message.account and detail.get("recipient") == message.recipient:
            message.vendor_message_id = event.vendor_message_id
            session.add(message)
            return attach_orphans(session, message, config=config, now=now)
    return 0
