"""A delivery-report scenario whose figures are worked out by hand (below), shared by the
report API, page and CLI tests.

Fourteen messages over two days (22 and 23 Nov 2026, UTC), two channels (whatsapp, sms), two
business phones (A, B), plus one just before and one just after the range. Each is accepted
one second after it is asked for; `dur` is accepted -> delivered in seconds.

    id   day  channel  acct route     reached                          notes
    m01  22   whatsapp A    custom    accepted sent delivered read      dur 10, billable service
    m02  22   whatsapp A    custom    accepted sent delivered           dur 30, billable service
    m03  22   whatsapp A    template  accepted sent failed              131026 message undeliverable
    m04  22   whatsapp A    -         rejected                          window_closed
    m05  22   sms      A    sms       accepted sent delivered           dur 60, USD 0.01 (1 segment)
    m06  23   whatsapp B    custom    accepted sent delivered read      dur 20, billable service
    m07  23   whatsapp A    sms       accepted sent delivered           dur 300, USD 0.02 (2 segm.)
    m08  23   sms      B    sms       accepted failed                   UNDELIV undelivered
    m09  23   whatsapp A    custom    accepted sent failed              131026 message undeliverable
    m10  23   whatsapp B    -         rejected                          opted_out
    m11  23   whatsapp A    template  accepted sent expired             billable marketing
    m12  23   sms      A    sms       accepted sent delivered           dur 45, INR 0.5 (1 segment)
    m13  23   whatsapp A    custom    (queued)
    m14  23   whatsapp B    custom    accepted sent delivered           dur 15, billable service

Totals: submitted 14, accepted 11, sent 10, delivered 7, read 2, failed 3, rejected 2,
expired 1; delivery rate 7/11; durations 10 15 20 30 45 60 300: median 30, p95 (nearest rank,
ceil(0.95*7) = 7th) 300; routes custom 6, template 2, sms 4, none 2; refused window_closed 1,
opted_out 1; failures 131026 x2, then UNDELIV, opted_out, window_closed x1 each; billable 5
(service 4, marketing 1); SMS cost USD 0.03 (2 messages, 3 segments), INR 0.5 (1, 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from store.models import Conversation, OutboundMessage

A = "91856321412"
B = "91856321499"
CUSTOMER = "91856321432"
SINCE, UNTIL = "2026-11-22", "2026-11-23"  # until a date: to the end of that day
NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)

USD1 = {"pay": "0.01", "currency": "USD", "chargeCnt": 1, "price": "0.01"}
USD2 = {"pay": "0.02", "currency": "USD", "chargeCnt": 2, "price": "0.01"}
INR = {"pay": "0.5", "currency": "INR", "chargeCnt": "1", "price": "0.5"}

# id, day, hour, channel, account, route, reached (status: seconds after accepted), extra
SCENARIO: list[tuple[str, int, int, str, str, str | None, dict[str, int], dict[str, Any]]] = [
    ("m01", 22, 9, "whatsapp", A, "custom", {"accepted": 0, "sent": 5, "delivered": 10,
                                             "read": 100},
     {"billable": True, "conversation_type": "service"}),
    ("m02", 22, 10, "whatsapp", A, "custom", {"accepted": 0, "sent": 5, "delivered": 30},
     {"billable": True, "conversation_type": "service"}),
    ("m03", 22, 11, "whatsapp", A, "template", {"accepted": 0, "sent": 5, "failed": 50},
     {"failure_code": "131026", "failure_reason": "message undeliverable", "billable": False}),
    ("m04", 22, 12, "whatsapp", A, None, {"rejected": -1},
     {"failure_code": "window_closed", "failure_reason": "refused before sending"}),
    ("m05", 22, 13, "sms", A, "sms", {"accepted": 0, "sent": 60, "delivered": 60},
     {"cost": USD1}),
    ("m06", 23, 8, "whatsapp", B, "custom", {"accepted": 0, "sent": 2, "delivered": 20,
                                             "read": 40},
     {"billable": True, "conversation_type": "service"}),
    ("m07", 23, 9, "whatsapp", A, "sms", {"accepted": 0, "sent": 300, "delivered": 300},
     {"cost": USD2, "fallback_reason": "window_closed"}),
    ("m08", 23, 10, "sms", B, "sms", {"accepted": 0, "failed": 70},
     {"failure_code": "UNDELIV", "failure_reason": "undelivered"}),
    ("m09", 23, 11, "whatsapp", A, "custom", {"accepted": 0, "sent": 3, "failed": 9},
     {"failure_code": "131026", "failure_reason": "message undeliverable"}),
    ("m10", 23, 12, "whatsapp", B, None, {"rejected": -1},
     {"failure_code": "opted_out", "failure_reason": "refused before sending"}),
    ("m11", 23, 13, "whatsapp", A, "template", {"accepted": 0, "sent": 4, "expired": 20 * 3600},
     {"billable": True, "conversation_type": "marketing"}),
    ("m12", 23, 14, "sms", A, "sms", {"accepted": 0, "sent": 45, "delivered": 45},
     {"cost": INR}),
    ("m13", 23, 15, "whatsapp", A, "custom", {}, {}),
    ("m14", 23, 23, "whatsapp", B, "custom", {"accepted": 0, "sent": 1, "delivered": 15},
     {"billable": True, "conversation_type": "service"}),
]
# Just outside [22 Nov 00:00, 24 Nov 00:00): never counted.
OUTSIDE = [
    ("x01", datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC)),
    ("x02", datetime(2026, 11, 24, 0, 0, 0, tzinfo=UTC)),
]


def _message(message_id: str, created: datetime, channel: str, account: str,
             route: str | None, reached: dict[str, int], extra: dict[str, Any]) -> OutboundMessage:
    accepted = created + timedelta(seconds=1)
    times = {f"{status}_at": accepted + timedelta(seconds=s) for status, s in reached.items()}
    order = ("accepted", "sent", "delivered", "read", "failed", "rejected", "expired")
    status = next((s for s in reversed(order) if s in reached), "queued")
    last = max(times.values(), default=created)
    return OutboundMessage(
        id=message_id, channel=channel, account=account, recipient=CUSTOMER, route=route,
        status=status, request={}, created_at=created, status_at=last, **times, **extra)


def seed(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for message_id, day, hour, channel, account, route, reached, extra in SCENARIO:
            created = datetime(2026, 11, day, hour, 0, 0, tzinfo=UTC)
            session.add(_message(message_id, created, channel, account, route, reached, extra))
        for message_id, created in OUTSIDE:
            session.add(_message(message_id, created, "whatsapp", A, "custom",
                                 {"accepted": 0, "sent": 1, "delivered": 2}, {}))


def seed_windows(engine: Engine, *, now: datetime = NOW) -> None:
    """Three WhatsApp windows: one closing in 2 h 58 min (unanswered), one in 4 h 58 min
    (answered), one with 20 h left (not soon), one closed."""
    rows = [
        ("91856321441", now - timedelta(hours=21), None),
        ("91856321442", now - timedelta(hours=19), now - timedelta(hours=18)),
        ("91856321443", now - timedelta(hours=4), None),
        ("91856321444", now - timedelta(hours=30), None),
    ]
    with Session(engine) as session, session.begin():
        for customer, inbound, outbound in rows:
            session.add(Conversation(channel="whatsapp", account=A, customer=customer,
                                     last_inbound_at=inbound, last_outbound_at=outbound,
                                     created_at=now, updated_at=now))
