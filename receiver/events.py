"""What a vendor callback means, as plain frozen values (parsers make them, apply uses them).

Every event carries its dedup `key`: the store applies an event only if its key is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
