"""What a vendor callback means, as plain frozen values (parsers make them, apply uses them).

Every event carries its dedup `key`: the store applies an event only if its key is new.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, get_args

from receiver.errors import BadPayload


@dataclass(frozen=True)
class Owner:
    """Which of our accounts the event is for: checked against the configuration."""

    kind: str  # itnio_whatsapp | itnio_sms | yzj
    ref: str | None  # appId or rel_wxid


@dataclass(frozen=True)
class ChatSeen:
    """A message in a conversation: a customer's, or one sent from the account but not by us."""

    key: str
    owner: Owner
    channel: str
    direction: str  # in | out
    account: str
    customer: str
    vendor_message_id: str
    msg_type: str
    text: str | None
    content: dict[str, Any]
    sent_at: datetime | None
    customer_name: str | None = None


@dataclass(frozen=True)
class StatusReported:
    """A vendor's word on one of our outbound messages."""

    key: str
    owner: Owner
    channel: str
    status: str  # sent | delivered | read | failed | deleted
    occurred_at: datetime | None
    vendor_message_id: str | None = None
    client_ref: str | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    billable: bool | None = None
    conversation_type: str | None = None
    cost: dict[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateChanged:
    key: str
    owner: Owner
    vendor_template_id: str | None
    name: str
    language: str
    status: str
    reason: str | None
    occurred_at: datetime | None


@dataclass(frozen=True)
class Unhandled:
    """An event type we do not act on; the body is kept, nothing is applied."""

    kind: str
    owner: Owner
    key: None = None


Event = ChatSeen | StatusReported | TemplateChanged | Unhandled


# Column widths of what events write; a longer value is a body we cannot store as meant.
LIMITS = {
    "account": 64, "customer": 64, "vendor_message_id": 255, "msg_type": 32, "status": 16,
    "client_ref": 255, "failure_code": 64, "name": 255, "language": 16,
    "vendor_template_id": 64, "conversation_type": 32,
}
KEY_LIMIT = 200


def short_key(key: str) -> str:
    """A dedup key that fits its column: long ones keep a prefix and a digest of the whole."""
    if len(key) <= KEY_LIMIT:
        return key
    return key[:120] + "#" + hashlib.sha256(key.encode()).hexdigest()


def _limited(kind: type) -> tuple[tuple[str, int], ...]:
    names = {f.name for f in fields(kind)}
    return tuple((name, limit) for name, limit in LIMITS.items() if name in names)


# Each event type's fields that have a limit (looked up once, not per event).
_LIMITED = {kind: _limited(kind) for kind in get_args(Event)}


def checked(events: list[Event]) -> list[Event]:
    """`events`, refused (BadPayload) if a field is too long to store; long keys shortened,
    long display names cut."""
    result = []
    for event in events:
        for field_name, limit in _LIMITED[type(event)]:
            value = getattr(event, field_name)
            if isinstance(value, str) and len(value) > limit:
                raise BadPayload(f"{field_name} is longer than {limit} characters.",
                                 code="wrong_shape")
        if event.key is not None and len(event.key) > KEY_LIMIT:
            event = replace(event, key=short_key(event.key))  # type: ignore[arg-type]
        if type(event) is ChatSeen and event.customer_name is not None \
                and len(event.customer_name) > 255:
            event = replace(event, customer_name=event.customer_name[:255])
        result.append(event)
    return result
