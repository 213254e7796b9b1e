"""ITNIO pushes -> events (vendor-formats.md §2 WhatsApp, §3 SMS), and the lenient readers
under them (receiver/_lenient.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from receiver import _lenient as L
from receiver.errors import BadPayload
from receiver.events import ChatSeen, Owner, StatusReported, TemplateChanged, Unhandled
from receiver.parse_itnio import message_text, parse_sms, parse_whatsapp, split_failure

WEBHOOKS = Path(__file__).parents[1] / "data" / "webhooks"
T0 = datetime.fromtimestamp(1718000000, UTC)


def raw(name: str) -> bytes:
    return (WEBHOOKS / name).read_bytes()


def sample(name: str) -> dict[str, Any]:
    return json.loads(raw(name))


def body(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def uplink(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An up-message-event with the documented envelope (§2a) around `message`."""
    return {
        "appId": "DGziZf5u", "channelType": 0, "messageId": "wamid.X1", "timestamp": 1718000000,
        "eventType": "up-message-event", "businessPhone": "91856321412",
        "from": {"phone": "91856321432", "name": "Alice"}, "message": message, **fields,
    }


def one(events: list[Any]) -> Any:
    assert len(events) == 1
    return events[0]


# -- uplink messages (§2a) -----------------------------------------------------------------


def test_the_text_uplink_sample() -> None:
    event = one(parse_whatsapp(raw("itnio_wa_uplink_text.json")))

    assert event == ChatSeen(
        key="whatsapp:in:91856321412:wamid.HBgMOTE4NTYzMjE0MzIVAgASGBQzQUJD",
        owner=Owner("itnio_whatsapp", "DGziZf5u"),
        channel="whatsapp",
        direction="in",
        account="91856321412",
        customer="91856321432",
        vendor_message_id="wamid.HBgMOTE4NTYzMjE0MzIVAgASGBQzQUJD",
        msg_type="text",
        text="hi, is my order shipped?",
        content={"type": "text", "text": {"body": "hi, is my order shipped?"}},
        sent_at=T0,
        customer_name="Alice",
    )


def test_the_image_uplink_sample_keeps_the_whole_message_and_reads_the_caption() -> None:
    event = one(parse_whatsapp(raw("itnio_wa_uplink_image.json")))

    assert isinstance(event, ChatSeen)
    assert event.msg_type == "image"
    assert event.text == "receipt"
    assert event.content == sample("itnio_wa_uplink_image.json")["message"]
    assert event.vendor_message_id == "wamid.IMAGE0001"


MEDIA = {"filePath": "https://media.example/f", "mimeType": "x/y", "id": "77", "sha256": "ab12"}


@pytest.mark.parametrize(
    ("message", "text"),
    [
        pytest.param({"type": "text", "text": {"body": "hello"}}, "hello", id="text"),
        pytest.param({"type": "image", "image": {**MEDIA, "caption": "receipt"}}, "receipt",
                     id="image with caption"),
        pytest.param({"type": "image", "image": MEDIA}, None, id="image without caption"),
        pytest.param({"type": "video", "video": {**MEDIA, "caption": "unboxing",
                                                 "filename": "v.mp4"}}, "unboxing", id="video"),
        pytest.param({"type": "audio", "audio": MEDIA}, None, id="audio"),
        pytest.param({"type": "document", "document": {**MEDIA, "filename": "invoice.pdf",
                                                       "caption": "my invoice"}},
                     "my invoice", id="document"),
        pytest.param({"type": "location", "location": {"longitude": "121.47",
                                                       "latitude": "31.23"}}, None,
                     id="location"),
        pytest.param({"type": "sticker", "sticker": {**MEDIA, "mimeType": "image/webp",
                                                     "animated": False}}, None, id="sticker"),
        pytest.param({"type": "unknown", "unknown": {"code": 131051, "title": "Unsupported"}},
                     None, id="unknown"),
        pytest.param({"type": "unsupported"}, None, id="unsupported"),
        # Not documented by ITNIO; accepted the WhatsApp Cloud API way.
        pytest.param({"type": "interactive", "interactive": {
            "type": "button_reply", "button_reply": {"id": "yes", "title": "Yes please"}}},
            "Yes please", id="interactive button reply"),
        pytest.param({"type": "interactive", "interactive": {
            "type": "list_reply", "list_reply": {"id": "r1", "title": "Track my order",
                                                 "description": "where is it"}}},
            "Track my order", id="interactive list reply"),
        pytest.param({"type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}},
                     "Stop promotions", id="template quick-reply button"),
        pytest.param({"type": "reaction", "reaction": {"message_id": "wamid.Y", "emoji": "👍"}},
                     None, id="reaction"),
        pytest.param({"type": "text", "text": {"body": "   "}}, None, id="blank text"),
        pytest.param({"type": "text", "text": "not an object"}, None, id="text not an object"),
        pytest.param({}, None, id="empty message"),
    ],
)
def test_every_uplink_type_is_a_chat_message(message: dict[str, Any], text: str | None) -> None:
    event = one(parse_whatsapp(body(uplink(message))))

    assert isinstance(event, ChatSeen)
    assert event.direction == "in"
    assert event.channel == "whatsapp"
    assert event.account == "91856321412"
    assert event.customer == "91856321432"
    assert event.customer_name == "Alice"
    assert event.msg_type == (message.get("type") or "unknown")
    assert event.text == text
    assert event.content == message  # stored whole, unknown fields included
    assert event.key == "whatsapp:in:91856321412:wamid.X1"


def test_message_text_keeps_the_words_as_sent() -> None:
    assert message_text({"type": "text", "text": {"body": "  two  spaces "}}) == "  two  spaces "


def test_unknown_fields_are_kept_in_the_content() -> None:
    message = {"type": "text", "text": {"body": "hi"}, "context": {"id": "wamid.PREV"},
               "future_field": [1, 2]}
    event = one(parse_whatsapp(body(uplink(message, somethingNew=True))))

    assert event.content == message


def test_a_missing_message_object_is_still_an_inbound_message() -> None:
    item = uplink({})
    del item["message"]
    event = one(parse_whatsapp(body(item)))

    assert isinstance(event, ChatSeen)
    assert (event.msg_type, event.text, event.content) == ("unknown", None, {})


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        pytest.param(1718000000, T0, id="seconds"),
        pytest.param(1718000000123, T0 + timedelta(milliseconds=123), id="milliseconds"),
        pytest.param("1718000000", T0, id="seconds as a string"),
        pytest.param(" 1718000000123 ", T0 + timedelta(milliseconds=123),
                     id="milliseconds as a string"),
        pytest.param(1718000000.5, T0 + timedelta(milliseconds=500), id="fractional seconds"),
        pytest.param("2024-06-10T06:13:20Z", T0, id="ISO with Z"),
        pytest.param("2024-06-10T14:13:20+08:00", T0, id="ISO with an offset"),
        pytest.param(None, None, id="null"),
        pytest.param("soon", None, id="not a time"),
        pytest.param(True, None, id="a boolean"),
        pytest.param(10**20, None, id="out of range"),
    ],
)
def test_uplink_timestamps(timestamp: Any, expected: datetime | None) -> None:
    event = one(parse_whatsapp(body(uplink({"type": "text"}, timestamp=timestamp))))

    assert event.sent_at == expected


def test_a_numeric_message_id_and_phones_are_read_as_text() -> None:
    item = uplink({"type": "text"}, messageId=123456789012345678901234567890,
                  businessPhone=91856321412)
    item["from"]["phone"] = 91856321432
    event = one(parse_whatsapp(body(item)))

    assert event.vendor_message_id == "123456789012345678901234567890"
    assert (event.account, event.customer) == ("91856321412", "91856321432")


def test_a_huge_integer_id_does_not_break_parsing() -> None:
    event = one(parse_whatsapp(body(uplink({"type": "text"}, messageId=10**400))))

    assert event.vendor_message_id == str(10**400)


@pytest.mark.parametrize(
    ("drop", "path"),
    [
        pytest.param("messageId", "messageId", id="messageId"),
        pytest.param("businessPhone", "businessPhone", id="businessPhone"),
        pytest.param("from", "from.phone", id="from"),
    ],
)
def test_an_uplink_missing_what_identifies_it_is_wrong_shape(drop: str, path: str) -> None:
    item = uplink({"type": "text", "text": {"body": "hi"}})
    del item[drop]

    with pytest.raises(BadPayload) as raised:
        parse_whatsapp(body(item))
    assert raised.value.code == "wrong_shape"
    assert path in raised.value.detail


@pytest.mark.parametrize("message_id", ["", "   ", None, {"id": "x"}, [], True])
def test_an_unusable_message_id_is_wrong_shape(message_id: Any) -> None:
    with pytest.raises(BadPayload) as raised:
        parse_whatsapp(body(uplink({"type": "text"}, messageId=message_id)))
    assert raised.value.code == "wrong_shape"


# -- status reports (§2b) ------------------------------------------------------------------


def status_event(**fields: Any) -> dict[str, Any]:
    return {**sample("itnio_wa_status_delivered.json"), **fields}


def test_the_delivered_status_sample() -> None:
    event = one(parse_whatsapp(raw("itnio_wa_status_delivered.json")))

    assert event == StatusReported(
        key="whatsapp:status:1786543210987654321:delivered",
        owner=Owner("itnio_whatsapp", "xJdRmKR3"),
        channel="whatsapp",
        status="delivered",
        occurred_at=datetime.fromtimestamp(1718000005, UTC),
        vendor_message_id="1786543210987654321",
        billable=True,
        conversation_type="utility",
        detail={"from": "91856321412", "recipient": "91856321432",
                "conversation_id": "f5fdae3920125a39a1e6a23e5f877c16",
                "conversation_expires_at": "1718086400"},
    )


def test_the_failed_status_sample_splits_code_and_reason() -> None:
    event = one(parse_whatsapp(raw("itnio_wa_status_failed.json")))

    assert isinstance(event, StatusReported)
    assert event.status == "failed"
    assert (event.failure_code, event.failure_reason) == ("131047", "Re-engagement message")
    assert event.billable is False
    assert event.key == "whatsapp:status:1786543210987654321:failed"


@pytest.mark.parametrize("spelling", ["form", "from"])
def test_the_sender_is_read_from_form_or_from(spelling: str) -> None:
    item = status_event()
    del item["form"]
    item[spelling] = "91800000000"
    event = one(parse_whatsapp(body(item)))

    assert event.detail["from"] == "91800000000"


def test_from_wins_over_form_when_both_are_sent() -> None:
    event = one(parse_whatsapp(body(status_event(**{"from": "111", "form": "222"}))))

    assert event.detail["from"] == "111"


@pytest.mark.parametrize(
    ("billable", "expected"),
    [("true", True), ("false", False), ("TRUE", True), (" False ", False), (True, True),
     (False, False), ("yes", None), (1, None), (None, None)],
)
def test_billable(billable: Any, expected: bool | None) -> None:
    event = one(parse_whatsapp(body(status_event(billable=billable))))

    assert event.billable is expected


def test_billable_absent_is_unknown() -> None:
    item = status_event()
    del item["billable"]

    assert one(parse_whatsapp(body(item))).billable is None


@pytest.mark.parametrize(
    ("reported", "status"),
    [("sent", "sent"), ("delivered", "delivered"), ("read", "read"), ("failed", "failed"),
     ("deleted", "deleted"), ("DELIVERED", "delivered"), ("Read", "read"),
     (" Failed ", "failed")],
)
def test_status_in_any_case(reported: str, status: str) -> None:
    event = one(parse_whatsapp(body(status_event(status=reported))))

    assert event.status == status
    assert event.key == f"whatsapp:status:1786543210987654321:{status}"


@pytest.mark.parametrize(
    ("failure", "code", "reason"),
    [
        ("131047: Re-engagement message", "131047", "Re-engagement message"),
        ("131047:Re-engagement message", "131047", "Re-engagement message"),
        ("131047\uff1a重新参与消息", "131047", "重新参与消息"),  # a full-width colon
        ("131026 - Message undeliverable", "131026", "Message undeliverable"),
        ("131050", "131050", None),
        (131050, "131050", None),
        ("-1: unknown", "-1", "unknown"),
        ("Message undeliverable", None, "Message undeliverable"),
        ("", None, None),
        (None, None, None),
    ],
)
def test_split_failure(failure: Any, code: str | None, reason: str | None) -> None:
    assert split_failure(failure) == (code, reason)


def test_a_failure_text_is_only_read_for_failed_statuses() -> None:
    event = one(parse_whatsapp(body(status_event(status="sent", failure="131047: x"))))

    assert (event.failure_code, event.failure_reason) == (None, None)


def test_a_failed_status_without_a_failure_text() -> None:
    item = sample("itnio_wa_status_failed.json")
    del item["failure"]
    event = one(parse_whatsapp(body(item)))

    assert (event.status, event.failure_code, event.failure_reason) == ("failed", None, None)


@pytest.mark.parametrize("drop", ["messageId", "status"])
def test_a_status_event_missing_its_id_or_status_is_wrong_shape(drop: str) -> None:
    item = status_event()
    del item[drop]

    with pytest.raises(BadPayload) as raised:
        parse_whatsapp(body(item))
    assert raised.value.code == "wrong_shape"
    assert drop in raised.value.detail


# -- template status (§2c) -----------------------------------------------------------------


def test_the_template_status_sample() -> None:
    event = one(parse_whatsapp(raw("itnio_wa_template_status.json")))

    assert event == TemplateChanged(
        key="template:998961841525295:zh_TW:APPROVED:1718000000",
        owner=Owner("itnio_whatsapp", "xJdRmKR3"),
        vendor_template_id="998961841525295",
        name="new_shop",
        language="zh_TW",
        status="APPROVED",
        reason="NONE",
        occurred_at=T0,
    )


def test_a_template_status_is_upper_cased() -> None:
    item = {**sample("itnio_wa_template_status.json"), "status": "paused"}

    assert one(parse_whatsapp(body(item))).status == "PAUSED"


def test_a_template_status_without_its_name_is_wrong_shape() -> None:
    item = sample("itnio_wa_template_status.json")
    del item["templateName"]

    with pytest.raises(BadPayload) as raised:
        parse_whatsapp(body(item))
    assert raised.value.code == "wrong_shape"


# -- dispatch and shapes -----------------------------------------------------------------------


def test_an_array_of_events_gives_one_event_each_in_order() -> None:
    payload = [sample("itnio_wa_uplink_text.json"), sample("itnio_wa_status_delivered.json"),
               sample("itnio_wa_template_status.json"), {"eventType": "billing-event"}]
    events = parse_whatsapp(body(payload))

    assert [type(e) for e in events] == [ChatSeen, StatusReported, TemplateChanged, Unhandled]


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        pytest.param({"eventType": "billing-event", "appId": "xJdRmKR3", "amount": "0.01"},
                     "billing-event", id="unknown eventType"),
        pytest.param({"appId": "xJdRmKR3", "messageId": "1"}, "unknown", id="no eventType"),
        pytest.param({"eventType": "", "appId": "xJdRmKR3"}, "unknown", id="blank eventType"),
        pytest.param({"eventType": 7, "appId": "xJdRmKR3"}, "7", id="numeric eventType"),
    ],
)
def test_events_we_do_not_act_on_are_unhandled(item: dict[str, Any], kind: str) -> None:
    event = one(parse_whatsapp(body(item)))

    assert event == Unhandled(kind=kind, owner=Owner("itnio_whatsapp", "xJdRmKR3"))
    assert event.key is None


def test_the_event_type_tolerates_stray_spaces() -> None:
    item = {**sample("itnio_wa_uplink_text.json"), "eventType": " up-message-event "}

    assert isinstance(one(parse_whatsapp(body(item))), ChatSeen)


def test_an_event_without_an_app_id_has_no_owner_ref() -> None:
    item = sample("itnio_wa_uplink_text.json")
    del item["appId"]

    assert one(parse_whatsapp(body(item))).owner == Owner("itnio_whatsapp", None)


@pytest.mark.parametrize(
    ("raw_body", "code"),
    [
        pytest.param(b"5", "wrong_shape", id="a number"),
        pytest.param(b'"up-message-event"', "wrong_shape", id="a string"),
        pytest.param(b"null", "wrong_shape", id="null"),
        pytest.param(b"[]", "wrong_shape", id="an empty array"),
        pytest.param(b"[1]", "wrong_shape", id="an array of a number"),
        pytest.param(b'[{"eventType": "x"}, 1]', "wrong_shape", id="a mixed array"),
        pytest.param(b"[[]]", "wrong_shape", id="an array of arrays"),
        pytest.param(b"\xff\xfe{}", "invalid_encoding", id="invalid UTF-8"),
        pytest.param(b'{"eventType": "\xe4\xbd"}', "invalid_encoding", id="cut UTF-8"),
        pytest.param(b"", "empty_body", id="empty"),
        pytest.param(b" \r\n\t ", "empty_body", id="whitespace"),
        pytest.param(b'{"appId": "xJdRmKR3", "eventType": "up-message', "invalid_json",
                     id="truncated JSON"),
        pytest.param(b"eventType=up-message-event", "invalid_json", id="form-encoded"),
        pytest.param(b"{'eventType': 'up-message-event'}", "invalid_json",
                     id="single-quoted keys"),
        pytest.param(b"[" * 100_000, "invalid_json", id="nested too deeply"),
        pytest.param(b"1" * 5000, "invalid_json", id="a 5000-digit number"),
    ],
)
def test_an_unreadable_body_is_a_bad_payload(raw_body: bytes, code: str) -> None:
    for parse in (parse_whatsapp, parse_sms):
        with pytest.raises(BadPayload) as raised:
            parse(raw_body)
        assert raised.value.code == code
        assert raised.value.detail


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    event = one(parse_whatsapp(b"\xef\xbb\xbf" + raw("itnio_wa_uplink_text.json")))

    assert isinstance(event, ChatSeen)


def test_one_broken_event_in_an_array_makes_the_body_wrong_shape() -> None:
    broken = sample("itnio_wa_status_delivered.json")
    del broken["messageId"]

    with pytest.raises(BadPayload) as raised:
        parse_whatsapp(body([sample("itnio_wa_uplink_text.json"), broken]))
    assert raised.value.code == "wrong_shape"


# -- dedup keys ------------------------------------------------------------------------------


def test_the_same_event_gives_the_same_key() -> None:
    first = parse_whatsapp(raw("itnio_wa_status_delivered.json"))
    again = parse_whatsapp(body(sample("itnio_wa_status_delivered.json")))  # re-serialised

    assert first[0].key == again[0].key


def test_a_repeated_uplink_with_another_push_time_has_the_same_key() -> None:
    first = one(parse_whatsapp(body(uplink({"type": "text"}, timestamp=1718000000))))
    retry = one(parse_whatsapp(body(uplink({"type": "text"}, timestamp=1718000060))))

    assert first.key == retry.key


def test_different_statuses_of_one_message_have_different_keys() -> None:
    keys = {one(parse_whatsapp(body(status_event(status=s)))).key
            for s in ("sent", "delivered", "read", "failed", "deleted")}

    assert len(keys) == 5


def test_keys_differ_by_kind_of_event() -> None:
    message_id = "same-id"
    in_key = one(parse_whatsapp(body(uplink({"type": "text"}, messageId=message_id)))).key
    status_key = one(parse_whatsapp(body(status_event(messageId=message_id)))).key

    assert in_key != status_key


# -- SMS delivery reports (§3b) ---------------------------------------------------------------


def dlr(**fields: Any) -> dict[str, Any]:
    return {**sample("itnio_sms_dlr.json"), **fields}


def test_the_dlr_sample() -> None:
    event = one(parse_sms(raw("itnio_sms_dlr.json")))

    assert event == StatusReported(
        key="sms:status:2108021059531000096:0",
        owner=Owner("itnio_sms", "4luaKsL2"),
        channel="sms",
        status="delivered",
        occurred_at=datetime(2021, 8, 24, 10, 32, 57, 192000, tzinfo=UTC),
        vendor_message_id="2108021059531000096",
        client_ref="gkdhirkvn",
        cost={"pay": "0.02", "currency": "USD", "chargeCnt": 2, "price": "0.01"},
        detail={"mobile": "91856321413", "mcc": None, "mnc": None},
    )


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [(1, "UNDELIV", "1"), ("2", "EXPIRED", "2"), (-1, "REJECTD", "-1"), (5.0, "x", "5")],
)
def test_a_failing_dlr(status: Any, reason: str, code: str) -> None:
    event = one(parse_sms(body(dlr(status=status, reason=reason))))

    assert event.status == "failed"
    assert (event.failure_code, event.failure_reason) == (code, reason)
    assert event.key == f"sms:status:2108021059531000096:{code}"


@pytest.mark.parametrize("status", [0, "0", " 0 ", 0.0])
def test_status_zero_in_any_form_is_delivered(status: Any) -> None:
    event = one(parse_sms(body(dlr(status=status))))

    assert (event.status, event.failure_code, event.failure_reason) == ("delivered", None, None)
    assert event.key == "sms:status:2108021059531000096:0"


@pytest.mark.parametrize("status", [None, "", {"code": 0}])
def test_a_dlr_without_a_usable_status_is_wrong_shape(status: Any) -> None:
    with pytest.raises(BadPayload) as raised:
        parse_sms(body(dlr(status=status)))
    assert raised.value.code == "wrong_shape"


@pytest.mark.parametrize("spelling", ["msgid", "msgId"])
def test_msgid_in_either_spelling(spelling: str) -> None:
    item = dlr()
    del item["msgid"]
    item[spelling] = "2108021059531000099"
    event = one(parse_sms(body(item)))

    assert event.vendor_message_id == "2108021059531000099"
    assert event.key == "sms:status:2108021059531000099:0"


def test_the_single_quoted_vendor_sample_parses() -> None:
    event = one(parse_sms(raw("itnio_sms_dlr_single_quoted.txt")))

    assert isinstance(event, StatusReported)
    assert event.client_ref == "gkdhirkvn"
    assert event.vendor_message_id == "2108021059531000097"
    assert event.status == "delivered"


def test_a_dlr_without_pricedetail_has_no_cost() -> None:
    item = dlr()
    del item["pricedetail"]

    assert one(parse_sms(body(item))).cost is None


@pytest.mark.parametrize(
    ("fields", "mnc"),
    [({"mnc": "03"}, "03"), ({"mcn": "03"}, "03"), ({"mnc": 3, "mcn": 9}, "3"), ({}, None)],
)
def test_mnc_in_either_spelling(fields: dict[str, Any], mnc: str | None) -> None:
    event = one(parse_sms(body(dlr(mcc=515, **fields))))

    assert event.detail["mcc"] == "515"
    assert event.detail["mnc"] == mnc


def test_an_sms_push_of_unknown_shape_is_unhandled() -> None:
    event = one(parse_sms(body({"appId": "4luaKsL2", "balance": "12.5"})))

    assert event == Unhandled(kind="sms-unknown", owner=Owner("itnio_sms", "4luaKsL2"))


def test_sms_dedup_keys() -> None:
    first = one(parse_sms(raw("itnio_sms_dlr.json")))
    again = one(parse_sms(raw("itnio_sms_dlr.json")))
    failed = one(parse_sms(body(dlr(status=1))))

    assert first.key == again.key
    assert first.key != failed.key


# -- SMS inbound (§3c) -----------------------------------------------------------------------


def test_the_inbound_sms_sample() -> None:
    event = one(parse_sms(raw("itnio_sms_mo.json")))

    assert isinstance(event, ChatSeen)
    assert event.key == "sms:in:2108021059531000096"
    assert (event.channel, event.direction) == ("sms", "in")
    assert (event.account, event.customer) == ("918663322141", "91856321413")
    assert event.vendor_message_id == "2108021059531000096"
    assert (event.msg_type, event.text) == ("text", "hello")
    # reply_time is the vendor's local time (+08:00): 11:00 there is 03:00 UTC.
    assert event.sent_at == datetime(2022, 11, 9, 3, 0, tzinfo=UTC)
    assert event.content["mcn"] == -1
    assert event.content["operator"] == "Philippines"


@pytest.mark.parametrize(
    ("reply_time", "expected"),
    [
        ("2022-11-09 11:00:00", datetime(2022, 11, 9, 3, 0, tzinfo=UTC)),
        ("2022-11-09T11:00:00", datetime(2022, 11, 9, 3, 0, tzinfo=UTC)),
        ("2022-11-09 01:00:00", datetime(2022, 11, 8, 17, 0, tzinfo=UTC)),
        ("2022-11-09T11:00:00Z", datetime(2022, 11, 9, 11, 0, tzinfo=UTC)),
        ("2022-11-09T11:00:00+05:30", datetime(2022, 11, 9, 5, 30, tzinfo=UTC)),
        ("09/11/2022 11:00", None),
        (None, None),
    ],
)
def test_inbound_reply_time_is_converted_to_utc(reply_time: Any,
                                                expected: datetime | None) -> None:
    item = {**sample("itnio_sms_mo.json"), "reply_time": reply_time}

    assert one(parse_sms(body(item))).sent_at == expected


@pytest.mark.parametrize("spelling", ["msgid", "msgId"])
def test_inbound_msgid_in_either_spelling(spelling: str) -> None:
    item = sample("itnio_sms_mo.json")
    del item["msgid"]
    item[spelling] = "m-1"

    assert one(parse_sms(body(item))).key == "sms:in:m-1"


@pytest.mark.parametrize("drop", ["msgid", "mobile"])
def test_an_inbound_sms_missing_its_id_or_number_is_wrong_shape(drop: str) -> None:
    item = sample("itnio_sms_mo.json")
    del item[drop]

    with pytest.raises(BadPayload) as raised:
        parse_sms(body(item))
    assert raised.value.code == "wrong_shape"


def test_inbound_mnc_is_kept_in_either_spelling() -> None:
    item = {**sample("itnio_sms_mo.json"), "mnc": "02"}
    del item["mcn"]

    assert one(parse_sms(body(item))).content["mnc"] == "02"


# -- the lenient readers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "abc"), ("  abc  ", "abc"), ("", None), ("   ", None), (0, "0"), (-1, "-1"),
        (12345678901234567890, "12345678901234567890"),
        pytest.param(10**400, str(10**400), id="a 401-digit int"),
        (1.0, "1"), (1.5, "1.5"), (1e20, "100000000000000000000"), (True, None),
        (False, None), (None, None), ({}, None), ([], None),
    ],
)
def test_text(value: Any, expected: str | None) -> None:
    assert L.text(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1718000000, T0),
        (1718000000000, T0),
        ("1718000000", T0),
        ("1718000000000", T0),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (float("inf"), None),
        (float("nan"), None),
        ("1" * 400, None),
        (10**20, None),
        ("2024-06-10 14:13:20", T0),  # zone-less: the vendor's +08:00
        ("2024-06-10T06:13:20.000Z", T0),
        ("yesterday", None),
        ("", None),
    ],
)
def test_epoch(value: Any, expected: datetime | None) -> None:
    assert L.epoch(value) == expected


@pytest.mark.parametrize(
    "value",
    ["0001-01-01 00:00:00", "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00",
     "2022-13-40 25:61:00", "not a date"],
)
def test_iso_out_of_range_or_invalid_is_none(value: str) -> None:
    assert L.iso(value) is None


def test_iso_is_always_utc() -> None:
    parsed = L.iso("2022-11-09 11:00:00")

    assert parsed == datetime(2022, 11, 9, 11, 0, tzinfo=timezone(timedelta(hours=8)))
    assert parsed is not None and parsed.tzinfo == UTC


@pytest.mark.parametrize(
    ("repairable", "expected"),
    [
        (b"{\"a\":'x'}", {"a": "x"}),
        (b"{\"a\": 'x y', \"b\": 'z'}", {"a": "x y", "b": "z"}),
        (b"{\"a\": 'it''s'}", None),  # not a simple quoted value: refused, not mangled
    ],
)
def test_single_quoted_values_are_repaired(repairable: bytes, expected: Any) -> None:
    if expected is None:
        with pytest.raises(BadPayload):
            L.load_json(repairable)
    else:
        assert L.load_json(repairable) == expected


def test_a_valid_body_is_never_repaired() -> None:
    text = b'{"content": "a: \'b\'"}'

    assert L.load_json(text) == {"content": "a: 'b'"}


# -- phone numbers, as the windows API and the outbox key them ------------------------------

WRITTEN = ["+91856321412", "91856321412", "+91 856 321 412", "+91-856-321-412",
           " +91 (856) 321-412 ", 91856321412]


@pytest.mark.parametrize("written", WRITTEN)
def test_uplink_phones_are_digits_only(written: Any) -> None:
    item = uplink({"type": "text", "text": {"body": "hi"}}, businessPhone=written,
                  **{"from": {"phone": str(written).replace("412", "432"), "name": "Alice"}})

    event = one(parse_whatsapp(body(item)))

    assert (event.account, event.customer) == ("91856321412", "91856321432")
    assert event.key == "whatsapp:in:91856321412:wamid.X1"  # one key, however it was written


@pytest.mark.parametrize("spelling", ["form", "from"])
@pytest.mark.parametrize("written", WRITTEN)
def test_status_phones_are_digits_only(written: Any, spelling: str) -> None:
    item = status_event(recipient=f"+{str(written).lstrip(' +')}".replace("412", "432"))
    del item["form"]
    item[spelling] = written

    event = one(parse_whatsapp(body(item)))

    assert (event.detail["from"], event.detail["recipient"]) == ("91856321412", "91856321432")


@pytest.mark.parametrize("written", WRITTEN)
def test_sms_phones_are_digits_only(written: Any) -> None:
    inbound = {**sample("itnio_sms_mo.json"), "mobile": written,
               "sendid": str(written).replace("412", "499")}
    report = dlr(mobile=written)

    reply = one(parse_sms(body(inbound)))
    delivered = one(parse_sms(body(report)))

    assert (reply.account, reply.customer) == ("91856321499", "91856321412")
    assert delivered.detail["mobile"] == "91856321412"


def test_a_value_that_is_not_a_phone_number_is_kept_as_sent() -> None:
    inbound = {**sample("itnio_sms_mo.json"), "sendid": "ACME-SMS"}

    assert one(parse_sms(body(inbound))).account == "ACME-SMS"


@pytest.mark.parametrize("blank", ["", "  ", None])
def test_a_blank_phone_is_still_wrong_shape(blank: Any) -> None:
    with pytest.raises(BadPayload) as caught:
        parse_whatsapp(body(uplink({"type": "text"}, businessPhone=blank)))

    assert caught.value.code == "wrong_shape"


def test_an_undocumented_whatsapp_status_is_kept_but_not_applied() -> None:
    from receiver.events import Unhandled
    from receiver.parse_itnio import parse_whatsapp

    body = json.loads((WEBHOOKS / "itnio_wa_status_delivered.json").read_text())
    [event] = parse_whatsapp(json.dumps(body | {"status": "pending-review"}).encode())
    assert isinstance(event, Unhandled)
