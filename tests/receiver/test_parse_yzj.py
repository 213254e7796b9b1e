"""云真机 callbacks -> events (vendor-formats.md §4b, §4d): plaintext and encrypted bodies, the
chatMsg directions and echoes, chatMsgSendFail, and the envelope's loose shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver import crypto
from receiver.errors import BadPayload
from receiver.events import ChatSeen, Owner, StatusReported, Unhandled
from receiver.parse_yzj import parse

WEBHOOKS = Path(__file__).parents[1] / "data" / "webhooks"
KEY = crypto.decode_key("replywindowTestVectorKey32bytes!")
STAFF = "1688851873049028"
CUSTOMER = "7881302848173300"
OWNER = Owner("yzj", STAFF)


def raw(name: str) -> bytes:
    return (WEBHOOKS / name).read_bytes()


def sample(name: str) -> list[dict[str, Any]]:
    return json.loads(raw(name))


def body(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def one(events: list[Any]) -> Any:
    assert len(events) == 1
    return events[0]


def chat_item(**fields: Any) -> dict[str, Any]:
    item = sample("yzj_chatmsg_inbound.json")[0]["data"][0]
    item.update(fields)
    return item


def envelope(kind: str, data: Any, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "corp_wxid": "1970325032041886", "rel_wxid": STAFF, "data": data,
            **fields}


# -- plaintext and encrypted -----------------------------------------------------------------


def test_plaintext_json_when_no_key_is_configured() -> None:
    event = one(parse(raw("yzj_test_vector_plain.json"), key=None))

    assert isinstance(event, ChatSeen)
    assert (event.direction, event.customer, event.text) == ("in", CUSTOMER, "你好")


def test_the_encrypted_test_vector_with_the_key() -> None:
    encrypted = parse(raw("yzj_test_vector_cipher.txt"), key=KEY)

    assert encrypted == parse(raw("yzj_test_vector_plain.json"), key=None)
    event = one(encrypted)
    assert event.key == f"wecom:msg:{STAFF}:1082847"
    assert event.owner == OWNER


@pytest.mark.parametrize(
    "name",
    ["yzj_chatmsg_inbound.json", "yzj_chatmsg_echo.json", "yzj_chatmsg_send_fail.json"],
)
def test_every_sample_reads_the_same_encrypted_or_not(name: str) -> None:
    assert parse(crypto.encrypt(raw(name), KEY), key=KEY) == parse(raw(name), key=None)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(raw("yzj_test_vector_plain.json"), "decryption_failed",
                     id="plaintext array"),
        pytest.param(body(envelope("chatMsg", [])), "wrong_shape", id="plaintext object"),
        pytest.param(b"", "empty_body", id="empty"),
        pytest.param(crypto.encrypt(raw("yzj_test_vector_plain.json"), b"K" * 32),
                     "decryption_failed", id="encrypted with another key"),
        pytest.param(crypto.encrypt(b"not json", KEY), "invalid_json",
                     id="decrypts to something not JSON"),
        pytest.param(crypto.encrypt(b"\xff\xfe", KEY), "invalid_encoding",
                     id="decrypts to something not UTF-8"),
        pytest.param(crypto.encrypt(b"", KEY), "empty_body", id="decrypts to nothing"),
        pytest.param(crypto.encrypt(b"42", KEY), "wrong_shape",
                     id="decrypts to a number"),
    ],
)
def test_a_body_that_does_not_decrypt_to_envelopes_is_a_bad_payload(payload: bytes,
                                                                     code: str) -> None:
    with pytest.raises(BadPayload) as raised:
        parse(payload, key=KEY)
    assert raised.value.code == code


# -- chatMsg ---------------------------------------------------------------------------------


def test_an_inbound_chat_message() -> None:
    event = one(parse(raw("yzj_chatmsg_inbound.json"), key=None))

    assert event == ChatSeen(
        key=f"wecom:msg:{STAFF}:1082847",
        owner=OWNER,
        channel="wecom",
        direction="in",
        account=STAFF,
        customer=CUSTOMER,
        vendor_message_id="1082847",
        msg_type="text",
        text="你好",
        content=sample("yzj_chatmsg_inbound.json")[0]["data"][0],
        sent_at=datetime.fromtimestamp(1718000000, UTC),
    )


def test_the_echo_of_our_own_send_is_a_sent_status() -> None:
    event = one(parse(raw("yzj_chatmsg_echo.json"), key=None))

    assert event == StatusReported(
        key=f"wecom:msg:{STAFF}:1082999",
        owner=OWNER,
        channel="wecom",
        status="sent",
        occurred_at=datetime.fromtimestamp(1718000002, UTC),
        vendor_message_id="168xxx,7xxx,1675997660116ABKocO",
        client_ref="116",
        detail={"svrid": "1082999", "account": STAFF},
    )


@pytest.mark.parametrize(
    ("ids", "client_ref", "vendor_message_id"),
    [
        pytest.param({"api_send_id": "116", "api_send_svrid": ""}, "116", None,
                     id="api_send_id only"),
        pytest.param({"api_send_id": 116, "api_send_svrid": ""}, "116", None,
                     id="api_send_id as a number"),
        pytest.param({"api_send_id": "", "api_send_svrid": "168xxx"}, None, "168xxx",
                     id="api_send_svrid only"),
        pytest.param({"api_send_svrid": "", "extra": {"api_send_id": "9"}}, "9", None,
                     id="api_send_id under extra"),
    ],
)
def test_an_echo_is_recognised_by_either_api_id(ids: dict[str, Any], client_ref: str | None,
                                                vendor_message_id: str | None) -> None:
    item = chat_item(from_wxid=STAFF, to_wxid=CUSTOMER, **ids)
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert isinstance(event, StatusReported)
    assert (event.status, event.client_ref, event.vendor_message_id) == (
        "sent", client_ref, vendor_message_id)


def test_an_outbound_message_not_sent_by_us_is_an_outbound_chat_message() -> None:
    item = chat_item(from_wxid=STAFF, to_wxid=CUSTOMER, svrid="2000", api_send_id="",
                     api_send_svrid="")
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert isinstance(event, ChatSeen)
    assert (event.direction, event.account, event.customer) == ("out", STAFF, CUSTOMER)
    assert event.key == f"wecom:msg:{STAFF}:2000"


def test_an_outbound_message_without_chat_wxid_names_the_recipient() -> None:
    item = chat_item(from_wxid=STAFF, to_wxid=CUSTOMER, api_send_id="", api_send_svrid="")
    del item["chat_wxid"]
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert (event.direction, event.customer) == ("out", CUSTOMER)


def test_a_message_from_the_envelope_account_is_outbound_even_without_wxid() -> None:
    item = chat_item(from_wxid=STAFF, api_send_id="", api_send_svrid="")
    del item["wxid"]
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert (event.direction, event.account) == ("out", STAFF)


def test_an_inbound_message_without_chat_wxid_is_from_its_sender() -> None:
    item = chat_item()
    del item["chat_wxid"]
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert (event.direction, event.customer) == ("in", CUSTOMER)


def test_a_group_message_belongs_to_the_group() -> None:
    item = chat_item(chat_wxid="R:10696051737", chat_type=2, from_wxid="7881300000000001")
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert (event.direction, event.customer) == ("in", "R:10696051737")


@pytest.mark.parametrize(
    ("ids", "message_id"),
    [
        pytest.param({"svrid": "1", "wx_svrid": "2", "msg_hash": "3"}, "1", id="svrid first"),
        pytest.param({"svrid": "", "wx_svrid": "2", "msg_hash": "3"}, "2", id="then wx_svrid"),
        pytest.param({"svrid": None, "wx_svrid": None, "msg_hash": "3"}, "3",
                     id="then msg_hash"),
        pytest.param({"svrid": 1082847}, "1082847", id="a numeric svrid"),
    ],
)
def test_the_message_id_and_dedup_key(ids: dict[str, Any], message_id: str) -> None:
    item = chat_item(**{"svrid": None, "wx_svrid": None, **ids})
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert event.vendor_message_id == message_id
    assert event.key == f"wecom:msg:{STAFF}:{message_id}"


def test_an_item_without_ids_gets_a_stable_digest_key() -> None:
    item = chat_item(svrid=None, wx_svrid=None)
    first = one(parse(body([envelope("chatMsg", [item])]), key=None))
    again = one(parse(body([envelope("chatMsg", [dict(reversed(item.items()))])]), key=None))
    other = one(parse(body([envelope("chatMsg", [{**item, "msg_time": 1}])]), key=None))

    assert first.key == again.key
    assert first.key != other.key


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ({"items": [{"type": "text", "text": "你好"}]}, "你好"),
        ({"items": [{"type": "text", "text": "a"}, {"type": "emoji", "text": "[微笑]"}]},
         "a[微笑]"),
        ({"items": []}, None),
        ({"items": ["not an object"]}, None),
        ({"text": "群公告"}, "群公告"),
        ({"url": "https://x/y.jpg"}, None),
        ("not an object", None),
    ],
)
def test_the_text_of_a_chat_message(content: Any, text: str | None) -> None:
    item = chat_item(content=content)
    event = one(parse(body([envelope("chatMsg", [item])]), key=None))

    assert event.text == text
    assert event.content == item  # the whole item is kept


@pytest.mark.parametrize(
    "item",
    [
        pytest.param({"msg_type": "text", "svrid": "1"}, id="no sender, account or chat"),
        pytest.param({"wxid": STAFF, "msg_type": "text", "svrid": "1"}, id="no partner"),
    ],
)
def test_a_chat_message_naming_no_one_is_wrong_shape(item: dict[str, Any]) -> None:
    with pytest.raises(BadPayload) as raised:
        parse(body([{"type": "chatMsg", "data": [item]}]), key=None)
    assert raised.value.code == "wrong_shape"


def test_without_rel_wxid_the_item_account_owns_the_event() -> None:
    item = chat_item()
    event = one(parse(body([{"type": "chatMsg", "data": [item]}]), key=None))

    assert event.owner == Owner("yzj", STAFF)


# -- chatMsgSendFail ----------------------------------------------------------------------------


def test_a_send_failure() -> None:
    event = one(parse(raw("yzj_chatmsg_send_fail.json"), key=None))

    assert event == StatusReported(
        key="wecom:fail:116",
        owner=OWNER,
        channel="wecom",
        status="failed",
        occurred_at=datetime.fromtimestamp(1718000003, UTC),
        vendor_message_id="168xxx,7xxx,1675997660116ABKocO",
        client_ref="116",
        failure_code="1",
        failure_reason="客户已删除/频率限制/企微号离线",
        detail={"account": STAFF, "target": CUSTOMER},
    )


def fail_item(**fields: Any) -> dict[str, Any]:
    item = sample("yzj_chatmsg_send_fail.json")[0]["data"][0]
    item.update(fields)
    return item


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"api_send_id": "116"}, "wecom:fail:116"),
        ({"api_send_id": "", "api_send_svrid": "168xxx"}, "wecom:fail:168xxx"),
    ],
)
def test_a_send_failure_key(fields: dict[str, Any], key: str) -> None:
    event = one(parse(body([envelope("chatMsgSendFail", [fail_item(**fields)])]), key=None))

    assert event.key == key


def test_a_send_failure_reason_falls_back_to_reason_and_the_time_to_msg_time() -> None:
    item = fail_item(reason="企微号离线", msg_time=1718000009)
    del item["errmsg"], item["fail_time"]
    event = one(parse(body([envelope("chatMsgSendFail", [item])]), key=None))

    assert event.failure_reason == "企微号离线"
    assert event.occurred_at == datetime.fromtimestamp(1718000009, UTC)


def test_the_echo_and_the_failure_of_one_send_have_different_keys() -> None:
    echo = one(parse(raw("yzj_chatmsg_echo.json"), key=None))
    failure = one(parse(raw("yzj_chatmsg_send_fail.json"), key=None))

    assert echo.client_ref == failure.client_ref == "116"
    assert echo.key != failure.key


# -- envelopes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chatMsg ", " chatMsg", "chatMsg\n"])
def test_a_type_with_stray_spaces_still_works(kind: str) -> None:
    envelopes = sample("yzj_chatmsg_inbound.json")
    envelopes[0]["type"] = kind

    assert isinstance(one(parse(body(envelopes), key=None)), ChatSeen)


def test_data_as_an_object() -> None:
    envelopes = sample("yzj_chatmsg_inbound.json")
    envelopes[0]["data"] = envelopes[0]["data"][0]

    assert one(parse(body(envelopes), key=None)) == one(
        parse(raw("yzj_chatmsg_inbound.json"), key=None))


def test_one_envelope_as_an_object_instead_of_an_array() -> None:
    [only] = sample("yzj_chatmsg_inbound.json")

    assert isinstance(one(parse(body(only), key=None)), ChatSeen)


def test_several_envelopes_and_items_in_one_body() -> None:
    envelopes = (sample("yzj_chatmsg_inbound.json") + sample("yzj_chatmsg_echo.json")
                 + sample("yzj_chatmsg_send_fail.json")
                 + [envelope("contacts", {"wxid": CUSTOMER})])
    envelopes[0]["data"].append(chat_item(svrid="1082848"))
    events = parse(body(envelopes), key=None)

    assert [type(e).__name__ for e in events] == [
        "ChatSeen", "ChatSeen", "StatusReported", "StatusReported", "Unhandled"]
    assert [getattr(e, "status", None) for e in events] == [None, None, "sent", "failed", None]
    assert len({e.key for e in events}) == 5  # distinct, the Unhandled one's None included


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        pytest.param(envelope("contacts", [{"wxid": CUSTOMER}]), "contacts", id="unknown type"),
        pytest.param(envelope("contacts ", {}), "contacts", id="the crypto page's sample"),
        pytest.param({"rel_wxid": STAFF, "data": []}, "unknown", id="no type"),
        pytest.param(envelope("", []), "unknown", id="blank type"),
    ],
)
def test_types_we_do_not_act_on_are_unhandled(env: dict[str, Any], kind: str) -> None:
    assert parse(body([env]), key=None) == [Unhandled(kind=kind, owner=OWNER)]


@pytest.mark.parametrize(
    "data",
    [pytest.param([], id="empty array"), pytest.param({}, id="empty object"),
     pytest.param(None, id="null"), pytest.param("x", id="a string"),
     pytest.param([1, "x", None], id="no objects")],
)
def test_a_chat_envelope_without_items_gives_no_events(data: Any) -> None:
    assert parse(body([envelope("chatMsg", data)]), key=None) == []


@pytest.mark.parametrize(
    "payload",
    [b"5", b'"chatMsg"', b"null", b"[]", b"[1]", b'[{"type": "chatMsg"}, []]', b"true"],
)
def test_an_envelope_that_is_not_an_object_is_wrong_shape(payload: bytes) -> None:
    with pytest.raises(BadPayload) as raised:
        parse(payload, key=None)
    assert raised.value.code == "wrong_shape"


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"", "empty_body"), (b"[{", "invalid_json"), (b"\xff", "invalid_encoding")],
)
def test_an_unreadable_plaintext_body(payload: bytes, code: str) -> None:
    with pytest.raises(BadPayload) as raised:
        parse(payload, key=None)
    assert raised.value.code == code
