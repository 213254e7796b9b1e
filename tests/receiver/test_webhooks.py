"""The vendor webhooks end to end, on SQLite and PostgreSQL: what is answered, what is kept,
what is applied (and applied once)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from receiver import crypto
from receiver.app import create_app
from receiver.settings import Settings
from store.models import (
    ChatMessage,
    Conversation,
    EventKey,
    InboxBody,
    OutboundMessage,
    QuarantinedBody,
    StatusEvent,
    Template,
)
from tests.conftest import DATA, TOKEN, FakeClock
from tests.settling import SettlingClient

WA = f"/webhooks/itnio/whatsapp/{TOKEN}"
SMS = f"/webhooks/itnio/sms/{TOKEN}"
YZJ = f"/webhooks/yzj/{TOKEN}"
ITNIO_ACK = {"status": "0", "reason": "success"}
YZJ_KEY = "replywindowTestVectorKey32bytes!"


def payload(name: str) -> Any:
    return json.loads((DATA / "webhooks" / name).read_text())


def raw(name: str) -> bytes:
    return (DATA / "webhooks" / name).read_bytes()


def rows(engine: Engine, model: Any) -> list[Any]:
    """Every row of `model`, in primary-key order."""
    with Session(engine) as session:
        key = model.__table__.primary_key.columns.values()[0]
        return list(session.exec(select(model).order_by(key)).all())


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def add_outbound(engine: Engine, *, channel: str, vendor_message_id: str | None = None,
                 client_ref: str | None = None, status: str = "accepted") -> str:
    """An outbound message as the sender (next issue) will have recorded it."""
    at = datetime(2024, 6, 10, 6, 13, 0, tzinfo=UTC)
    message = OutboundMessage(
        id="msg_test1", channel=channel, account="91856321412", recipient="91856321432",
        route="custom", status=status, vendor_message_id=vendor_message_id,
        client_ref=client_ref, created_at=at, status_at=at, accepted_at=at,
    )
    with Session(engine) as session, session.begin():
        session.add(message)
    return "msg_test1"


def outbound(engine: Engine, message_id: str = "msg_test1") -> OutboundMessage:
    with Session(engine) as session:
        found = session.get(OutboundMessage, message_id)
        assert found is not None
        return found


# -- ITNIO WhatsApp --------------------------------------------------------------------


def test_uplink_is_stored_and_opens_the_window(client: TestClient, engine: Engine) -> None:
    response = client.post(WA, json=payload("itnio_wa_uplink_text.json"))

    assert response.status_code == 200
    assert response.json() == ITNIO_ACK
    [body] = rows(engine, InboxBody)
    assert (body.vendor, body.route, body.state) == ("itnio", "whatsapp", "applied")
    assert body.body == response.request.content
    assert body.dedup_key == "whatsapp:in:91856321412:wamid.HBgMOTE4NTYzMjE0MzIVAgASGBQzQUJD"
    assert body.headers["content-type"] == "application/json"
    [conversation] = rows(engine, Conversation)
    assert (conversation.channel, conversation.account, conversation.customer) == (
        "whatsapp", "91856321412", "91856321432")
    assert conversation.customer_name == "Alice"
    assert conversation.last_inbound_at == datetime.fromtimestamp(1718000000, UTC)
    [message] = rows(engine, ChatMessage)
    assert message.text == "hi, is my order shipped?"
    assert message.content == {"type": "text", "text": {"body": "hi, is my order shipped?"}}


UPLINK_MESSAGES = {
    "text": {"type": "text", "text": {"body": "hello"}},
    "image": payload("itnio_wa_uplink_image.json")["message"],
    "video": {"type": "video", "video": {"filePath": "https://m/v.mp4", "mimeType": "video/mp4",
                                         "id": "v1", "sha256": "ab", "caption": "clip",
                                         "filename": "v.mp4"}},
    "audio": {"type": "audio", "audio": {"filePath": "https://m/a.ogg", "mimeType": "audio/ogg",
                                         "id": "a1", "sha256": "cd"}},
    "document": {"type": "document", "document": {"filename": "invoice.pdf",
                                                  "filePath": "https://m/i.pdf",
                                                  "mimeType": "application/pdf", "id": "d1",
                                                  "sha256": "ef", "caption": "invoice"}},
    "location": {"type": "location", "location": {"longitude": "121.47", "latitude": "31.23"}},
    "sticker": {"type": "sticker", "sticker": {"filePath": "https://m/s.webp",
                                               "mimeType": "image/webp", "animated": False,
                                               "id": "s1", "sha256": "01"}},
    "unknown": {"type": "unknown", "unknown": {"code": 131051, "title": "Unsupported"}},
    "unsupported": {"type": "unsupported"},
}


@pytest.mark.parametrize("kind", sorted(UPLINK_MESSAGES))
def test_every_uplink_type_is_stored_with_its_content_and_opens_the_window(
        client: TestClient, engine: Engine, kind: str) -> None:
    body = payload("itnio_wa_uplink_text.json") | {
        "messageId": f"wamid.{kind}", "message": UPLINK_MESSAGES[kind]}

    assert client.post(WA, json=body).status_code == 200

    [message] = rows(engine, ChatMessage)
    assert (message.msg_type, message.direction) == (kind, "in")
    assert message.content == UPLINK_MESSAGES[kind]
    [conversation] = rows(engine, Conversation)
    assert conversation.last_inbound_message_id == f"wamid.{kind}"


def test_a_callback_posted_three_times_is_kept_three_times_and_applied_once(
        client: TestClient, engine: Engine) -> None:
    for _ in range(3):
        assert client.post(WA, json=payload("itnio_wa_uplink_text.json")).json() == ITNIO_ACK

    assert [b.state for b in rows(engine, InboxBody)] == ["applied", "duplicate", "duplicate"]
    assert count(engine, ChatMessage) == 1
    assert count(engine, Conversation) == 1
    assert count(engine, EventKey) == 1


def test_a_late_older_message_never_shortens_the_window(client: TestClient, engine: Engine) -> None:
    newer = payload("itnio_wa_uplink_text.json") | {"messageId": "m2", "timestamp": 1718003600}
    older = payload("itnio_wa_uplink_text.json") | {"messageId": "m1", "timestamp": 1718000000}
    client.post(WA, json=newer)
    client.post(WA, json=older)

    [conversation] = rows(engine, Conversation)
    assert conversation.last_inbound_at == datetime.fromtimestamp(1718003600, UTC)
    assert conversation.last_inbound_message_id == "m2"
    assert count(engine, ChatMessage) == 2


def test_a_future_timestamp_is_clamped_to_the_receive_time(
        client: TestClient, engine: Engine, clock: FakeClock) -> None:
    future = clock.now + timedelta(days=3)
    body = payload("itnio_wa_uplink_text.json") | {"timestamp": int(future.timestamp())}
    client.post(WA, json=body)

    [conversation] = rows(engine, Conversation)
    assert conversation.last_inbound_at == clock.now


def test_milliseconds_and_numeric_strings_are_read_as_times(client: TestClient,
                                                            engine: Engine) -> None:
    body = payload("itnio_wa_uplink_text.json") | {"timestamp": "1718000000123"}
    client.post(WA, json=body)

    [conversation] = rows(engine, Conversation)
    assert conversation.last_inbound_at == datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=UTC)


def test_an_array_of_events_in_one_body(client: TestClient, engine: Engine) -> None:
    first = payload("itnio_wa_uplink_text.json")
    second = first | {"messageId": "wamid.second", "from": {"phone": "91856321499"}}
    assert client.post(WA, json=[first, second]).status_code == 200

    [body] = rows(engine, InboxBody)
    assert (body.event_count, body.state) == (2, "applied")
    assert count(engine, Conversation) == 2


STATUS_ORDER = ["sent", "delivered", "read"]


@pytest.mark.parametrize("order", [STATUS_ORDER, STATUS_ORDER[::-1], ["read", "sent", "delivered"]])
def test_statuses_in_any_order_end_at_the_furthest_and_never_move_back(
        client: TestClient, engine: Engine, order: list[str]) -> None:
    add_outbound(engine, channel="whatsapp", vendor_message_id="1786543210987654321")
    base = payload("itnio_wa_status_delivered.json")
    times = {"sent": 1718000003, "delivered": 1718000005, "read": 1718000009}
    for status in order:
        response = client.post(WA, json=base | {"status": status, "timestamp": times[status]})
        assert response.json() == ITNIO_ACK

    message = outbound(engine)
    assert message.status == "read"
    assert message.read_at == datetime.fromtimestamp(times["read"], UTC)
    assert message.delivered_at is not None and message.sent_at is not None
    assert count(engine, StatusEvent) == 3
    assert message.billable is True and message.conversation_type == "utility"


def test_read_with_no_delivered_fills_delivered(client: TestClient, engine: Engine) -> None:
    add_outbound(engine, channel="whatsapp", vendor_message_id="1786543210987654321")
    client.post(WA, json=payload("itnio_wa_status_delivered.json") | {"status": "read"})

    message = outbound(engine)
    assert message.status == "read"
    assert message.delivered_at == message.read_at == message.sent_at


def test_a_failure_keeps_the_vendor_code_and_a_late_sent_never_unfails(
        client: TestClient, engine: Engine) -> None:
    add_outbound(engine, channel="whatsapp", vendor_message_id="1786543210987654321")
    client.post(WA, json=payload("itnio_wa_status_failed.json"))
    client.post(WA, json=payload("itnio_wa_status_delivered.json") | {"status": "sent"})

    message = outbound(engine)
    assert (message.status, message.failure_code, message.failure_reason) == (
        "failed", "131047", "Re-engagement message")
    assert message.flagged is False


def test_delivered_after_failed_wins_and_is_flagged(client: TestClient, engine: Engine) -> None:
    add_outbound(engine, channel="whatsapp", vendor_message_id="1786543210987654321")
    client.post(WA, json=payload("itnio_wa_status_failed.json"))
    client.post(WA, json=payload("itnio_wa_status_delivered.json"))

    message = outbound(engine)
    assert (message.status, message.flagged) == ("delivered", True)


@pytest.mark.parametrize("sender_field", ["form", "from"])
def test_status_push_accepts_form_and_from(client: TestClient, engine: Engine,
                                           sender_field: str) -> None:
    body = payload("itnio_wa_status_delivered.json")
    body[sender_field] = body.pop("form")
    assert client.post(WA, json=body).status_code == 200

    [event] = rows(engine, StatusEvent)
    assert event.detail["from"] == "91856321412"


def test_a_status_for_a_message_not_yet_known_is_kept(client: TestClient, engine: Engine) -> None:
    client.post(WA, json=payload("itnio_wa_status_delivered.json"))

    [event] = rows(engine, StatusEvent)
    assert (event.vendor_message_id, event.status, event.message_id) == (
        "1786543210987654321", "delivered", None)
    assert event.detail["cost"] is None and event.detail["conversation_type"] == "utility"


def test_template_status_push_updates_the_template(client: TestClient, engine: Engine) -> None:
    client.post(WA, json=payload("itnio_wa_template_status.json"))
    older = payload("itnio_wa_template_status.json") | {"status": "PENDING",
                                                         "timestamp": 1717990000}
    client.post(WA, json=older)

    [template] = rows(engine, Template)
    assert (template.name, template.language, template.status, template.vendor_template_id) == (
        "new_shop", "zh_TW", "APPROVED", "998961841525295")


def test_unknown_event_types_are_stored_not_rejected(client: TestClient, engine: Engine) -> None:
    response = client.post(WA, json={"appId": "xJdRmKR3", "eventType": "billing-event", "x": 1})

    assert response.json() == ITNIO_ACK
    [body] = rows(engine, InboxBody)
    assert body.state == "stored"


def test_an_unconfigured_app_id_is_stored_and_flagged_not_applied(
        db_url: str, clock: FakeClock) -> None:
    settings = Settings(database_url=db_url, webhook_token=TOKEN, itnio_wa_app_id="DGziZf5u",
                        run_scheduler=False, _env_file=None)  # type: ignore[call-arg]
    other = payload("itnio_wa_uplink_text.json") | {"appId": "SOMEONE-ELSE"}
    with SettlingClient(create_app(settings, clock=clock)) as client:
        assert client.post(WA, json=other).json() == ITNIO_ACK
        again = payload("itnio_wa_uplink_text.json") | {"messageId": "m2"}
        assert client.post(WA, json=again).status_code == 200
    engine_rows = rows_for(db_url)
    assert engine_rows["states"] == ["flagged", "applied"]
    assert engine_rows["conversations"] == 1


def rows_for(db_url: str) -> dict[str, Any]:
    from store.db import make_engine

    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            states = [b.state for b in session.exec(select(InboxBody).order_by(col(InboxBody.id)))]
            conversations = len(session.exec(select(Conversation)).all())
        return {"states": states, "conversations": conversations}
    finally:
        engine.dispose()


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"appId": "xJdRmKR3", "eventType": "up-message', "invalid_json"),  # truncated
        (b"this is not json", "invalid_json"),
        (b"", "empty_body"),
        (b"\xff\xfe\x00garbage", "invalid_encoding"),
        (b"42", "wrong_shape"),
        (b'{"eventType": "up-message-event", "businessPhone": "91856321412"}', "wrong_shape"),
    ],
)
def test_an_unreadable_body_is_400_and_quarantined(
        client: TestClient, engine: Engine, body: bytes, code: str) -> None:
    response = client.post(WA, content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"] == code
    assert response.json()["detail"]
    # Rendered as every other answer of the API is (Starlette's JSONResponse: compact).
    assert response.content == json.dumps(response.json(), separators=(",", ":"),
                                           ensure_ascii=False).encode()
    [kept] = rows(engine, QuarantinedBody)
    assert (kept.body, kept.error, kept.route) == (body, code, "whatsapp")
    assert count(engine, InboxBody) == 0


def test_a_wrong_token_is_404_and_nothing_is_kept(client: TestClient, engine: Engine) -> None:
    response = client.post("/webhooks/itnio/whatsapp/not-the-token",
                           json=payload("itnio_wa_uplink_text.json"))

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert count(engine, InboxBody) == count(engine, QuarantinedBody) == 0


@pytest.mark.parametrize("route", [WA, SMS, YZJ])
def test_a_body_over_1_mib_is_413_and_its_first_mib_kept(
        client: TestClient, engine: Engine, route: str) -> None:
    response = client.post(route, content=b"x" * (2 * 1024 * 1024))

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    [kept] = rows(engine, QuarantinedBody)
    assert kept.error == "payload_too_large"
    assert len(kept.body) == 1024 * 1024


def test_a_get_is_405_with_a_json_error(client: TestClient) -> None:
    response = client.get(WA)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


# -- ITNIO SMS -------------------------------------------------------------------------


def test_sms_delivery_report_is_applied_with_its_cost(client: TestClient, engine: Engine) -> None:
    add_outbound(engine, channel="sms", vendor_message_id="2108021059531000096")
    for _ in range(3):
        assert client.post(SMS, json=payload("itnio_sms_dlr.json")).json() == ITNIO_ACK

    message = outbound(engine)
    assert message.status == "delivered"
    assert message.delivered_at == datetime(2021, 8, 24, 10, 32, 57, 192000, tzinfo=UTC)
    assert message.cost == {"pay": "0.02", "currency": "USD", "chargeCnt": 2, "price": "0.01"}
    assert count(engine, StatusEvent) == 1


def test_sms_report_matched_by_our_order_id(client: TestClient, engine: Engine) -> None:
    add_outbound(engine, channel="sms", client_ref="gkdhirkvn")
    failed = payload("itnio_sms_dlr.json") | {"status": 1, "reason": "UNDELIV"}
    client.post(SMS, json=failed)

    message = outbound(engine)
    assert (message.status, message.failure_code, message.failure_reason) == (
        "failed", "1", "UNDELIV")


def test_the_vendors_single_quoted_sample_is_read(client: TestClient, engine: Engine) -> None:
    response = client.post(SMS, content=raw("itnio_sms_dlr_single_quoted.txt"))

    assert response.status_code == 200
    [event] = rows(engine, StatusEvent)
    assert event.client_ref == "gkdhirkvn"


def test_inbound_sms_is_stored_in_its_conversation(client: TestClient, engine: Engine) -> None:
    assert client.post(SMS, json=payload("itnio_sms_mo.json")).json() == ITNIO_ACK

    [conversation] = rows(engine, Conversation)
    assert (conversation.channel, conversation.account, conversation.customer) == (
        "sms", "918663322141", "91856321413")
    # reply_time is the vendor's local time (UTC+8)
    assert conversation.last_inbound_at == datetime(2022, 11, 9, 3, 0, tzinfo=UTC)
    [message] = rows(engine, ChatMessage)
    assert message.text == "hello"


# -- 云真机 ------------------------------------------------------------------------------


@pytest.fixture
def yzj_client(db_url: str, clock: FakeClock) -> Any:
    settings = Settings(database_url=db_url, webhook_token=TOKEN, yzj_encoding_aes_key=YZJ_KEY,
                        run_scheduler=False, _env_file=None)  # type: ignore[call-arg]
    with SettlingClient(create_app(settings, clock=clock)) as client:
        yield client


def encrypted(name: str, *, form: str = "raw") -> bytes:
    cipher = crypto.encrypt(raw(name), crypto.decode_key(YZJ_KEY))
    if form == "json-string":
        return json.dumps(cipher.decode()).encode()
    if form == "encrypt-object":
        return json.dumps({"encrypt": cipher.decode()}).encode()
    return cipher


def test_the_documented_test_vector_is_accepted(yzj_client: TestClient, engine: Engine) -> None:
    response = yzj_client.post(YZJ, content=raw("yzj_test_vector_cipher.txt"))

    assert response.status_code == 200
    assert response.json() == {"errcode": 0}
    [conversation] = rows(engine, Conversation)
    assert (conversation.channel, conversation.account, conversation.customer) == (
        "wecom", "1688851873049028", "7881302848173300")
    [message] = rows(engine, ChatMessage)
    assert (message.text, message.direction) == ("你好", "in")


@pytest.mark.parametrize("form", ["raw", "json-string", "encrypt-object"])
def test_every_body_encoding_is_accepted(yzj_client: TestClient, engine: Engine, form: str) -> None:
    response = yzj_client.post(YZJ, content=encrypted("yzj_chatmsg_inbound.json", form=form))
    assert response.status_code == 200
    assert count(engine, ChatMessage) == 1


def test_the_echo_of_our_send_marks_it_sent(yzj_client: TestClient, engine: Engine) -> None:
    add_outbound(engine, channel="wecom", client_ref="116")
    for _ in range(3):
        yzj_client.post(YZJ, content=encrypted("yzj_chatmsg_echo.json"))

    message = outbound(engine)
    assert message.status == "sent"
    assert message.sent_at == datetime.fromtimestamp(1718000002, UTC)
    assert count(engine, StatusEvent) == 1
    assert count(engine, ChatMessage) == 0


def test_a_send_failure_before_the_echo_still_ends_failed(yzj_client: TestClient,
                                                          engine: Engine) -> None:
    add_outbound(engine, channel="wecom", client_ref="116")
    yzj_client.post(YZJ, content=encrypted("yzj_chatmsg_send_fail.json"))
    yzj_client.post(YZJ, content=encrypted("yzj_chatmsg_echo.json"))

    message = outbound(engine)
    assert (message.status, message.failure_code) == ("failed", "1")
    assert message.failure_reason == "客户已删除/频率限制/企微号离线"


def test_a_message_typed_by_staff_counts_as_a_reply(yzj_client: TestClient, engine: Engine) -> None:
    yzj_client.post(YZJ, content=encrypted("yzj_chatmsg_inbound.json"))
    by_staff = payload("yzj_chatmsg_echo.json")
    by_staff[0]["data"][0].update(api_send_id="", api_send_svrid="", svrid="222")
    yzj_client.post(YZJ, content=crypto.encrypt(json.dumps(by_staff).encode(),
                                                crypto.decode_key(YZJ_KEY)))

    [conversation] = rows(engine, Conversation)
    assert conversation.last_outbound_at == datetime.fromtimestamp(1718000002, UTC)
    assert sorted(m.direction for m in rows(engine, ChatMessage)) == ["in", "out"]


def test_a_wrong_key_is_400_and_quarantined(yzj_client: TestClient, engine: Engine) -> None:
    wrong = crypto.encrypt(raw("yzj_chatmsg_inbound.json"), b"W" * 32)
    response = yzj_client.post(YZJ, content=wrong)

    assert response.status_code == 400
    assert response.json()["error"] == "decryption_failed"
    [kept] = rows(engine, QuarantinedBody)
    assert kept.body == wrong


def test_plaintext_callbacks_when_no_key_is_configured(client: TestClient, engine: Engine) -> None:
    envelopes = [*payload("yzj_chatmsg_inbound.json"), {"type": "contacts ", "data": {}}]
    response = client.post(YZJ, json=envelopes)

    assert response.json() == {"errcode": 0}
    [body] = rows(engine, InboxBody)
    assert (body.state, body.event_count) == ("applied", 2)


def test_an_unconfigured_staff_account_is_flagged(db_url: str, clock: FakeClock) -> None:
    settings = Settings(database_url=db_url, webhook_token=TOKEN, yzj_accounts="someone-else",
                        run_scheduler=False, _env_file=None)  # type: ignore[call-arg]
    with SettlingClient(create_app(settings, clock=clock)) as client:
        assert client.post(YZJ, json=payload("yzj_chatmsg_inbound.json")).status_code == 200
    assert rows_for(db_url) == {"states": ["flagged"], "conversations": 0}


def test_text_a_database_would_refuse_is_stored_with_replacement_characters(
        client: TestClient, engine: Engine) -> None:
    """A lone surrogate or NUL (legal as JSON escapes) would break PostgreSQL's TEXT/JSONB."""
    body = (DATA / "webhooks" / "itnio_wa_uplink_text.json").read_text().replace(
        "hi, is my order shipped?", "half an emoji \\ud83d and a NUL \\u0000 here")

    assert client.post(WA, content=body.encode()).json() == ITNIO_ACK

    [message] = rows(engine, ChatMessage)
    assert message.text == "half an emoji \ufffd and a NUL \ufffd here"
    assert [b.state for b in rows(engine, InboxBody)] == ["applied"]


def test_a_body_our_parser_breaks_on_is_kept_as_failed_for_replay(engine: Engine) -> None:
    from receiver.ingest import Received, store_batch

    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    item = Received(vendor="itnio", route="whatsapp", received_at=now, headers={},
                    body=b'{"eventType":"up-message-event"}', parser_failure="KeyError: 'x'")
    with Session(engine) as session, session.begin():
        states = store_batch(session, [item])

    assert states == ["failed"]
    [body] = rows(engine, InboxBody)
    assert (body.state, body.detail, body.body) == ("failed", "KeyError: 'x'", item.body)
