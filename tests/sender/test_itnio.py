"""ItnioClient against a recording MockTransport that answers with the vendor's own examples."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from sender.errors import (
    OutcomeUnknown,
    VendorError,
    VendorRejected,
    VendorUnavailable,
    WindowClosed,
)
from sender.itnio import (
    ItnioClient,
    RemoteTemplate,
    SmsItem,
    SmsReport,
    SmsSubmitted,
    WhatsAppAccepted,
    sign,
)

pytestmark = pytest.mark.anyio

BASE = "https://api.itniotech.com"
KEY, SECRET = "bDqJFiq9", "7bz1lzh9"  # the vendor's worked example
NOW = datetime.fromtimestamp(1630468800, UTC)
SIGN = "05d7a50893e22a5c4bb3216ae3396c7c"

Answer = httpx.Response | dict[str, Any] | Exception
Handler = Callable[[httpx.Request], Answer | Awaitable[Answer]]

# seed 000, 响应示例
SEED_000_ANSWER = {"status": "0", "reason": "success",
                   "data": {"channelType": 0, "messageId": "10415ecbd0c848ebb7d5a3fe53269df6",
                            "timestamp": 1693813991}}
# vendor-formats §1, the proposed answer
FORMATS_1_ANSWER = {"status": "0", "reason": "success",
                    "data": {"channelType": 0, "messageId": "1786543210987654321",
                             "timestamp": 1718000000}}
# seed 001, 响应示例
SEED_001_ANSWER = {"status": "0", "reason": "success",
                   "data": {"templateId": "0bd9ea48738d4d0db667b1e1f50020a9",
                            "templateName": "itnio_template_xk_test", "type": 1,
                            "languageCode": "en", "status": "APPROVED"}}
# seed 002, 响应示例
SEED_002_ANSWER = {"status": "0", "reason": "success", "success": "2", "fail": "0",
                   "array": [{"msgId": "2207201629421000001", "number": "91856321412",
                              "orderId": "56584"},
                             {"msgId": "2207201629421000002", "number": "91856321413",
                              "orderId": "56585"}]}
# vendor-formats §3a, the real answer with failArray
FAIL_ARRAY_ANSWER = {"status": "-9", "reason": "DST_MCCMNC_LIMIT", "success": "0", "fail": "1",
                     "array": [],
                     "failArray": [{"msgId": "2509102134011228732", "number": "9112345678",
                                    "reason": "DST_MCCMNC_LIMIT"}]}
# vendor-formats §3d, getReport's fields
REPORT_ANSWER = {"status": "0", "reason": "success", "success": "1", "fail": "1",
                 "sending": "1", "nofound": "1",
                 "array": [{"msgId": "2207201629421000001", "number": "91856321412",
                            "receiveTime": "2021-02-12T09:30:03+08:00", "status": "0"},
                           {"msgId": "2207201629421000002", "number": "91856321413",
                            "receiveTime": "", "status": "-1"},
                           {"msgId": "2207201629421000003", "number": "91856321414",
                            "receiveTime": "2021-02-12T09:31:00+08:00", "status": "1"}]}

# seed 003, 响应示例, verbatim: note the unescaped quotes inside the first template's reason,
# which make it invalid JSON as printed.
# Seed 003's long real answer, verbatim (it is not quite JSON: see the client's repair).
SEED_003_ANSWER = (Path(__file__).parents[1] / "data" / "itnio"
                   / "seed_003_template_query_answer.txt").read_text(encoding="utf-8")


class FakeItnio:
    """The vendor as a MockTransport handler: records requests, answers what the test says."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.handler(request)
        if isinstance(answer, Awaitable):
            answer = await answer
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, dict):
            return httpx.Response(200, json=answer)
        return answer

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def make(handler: Handler, *, wa_app_id: str | None = "DGziZf5u",
               sms_app_id: str | None = "4luaKsL2",
               clock: Clock | None = None) -> tuple[ItnioClient, FakeItnio]:
    fake = FakeItnio(handler)
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    client = ItnioClient(http, base_url=BASE + "/", api_key=KEY, api_secret=SECRET,
                         wa_app_id=wa_app_id, sms_app_id=sms_app_id, clock=clock or Clock(NOW))
    return client, fake


def assert_signed(request: httpx.Request, timestamp: str = "1630468800",
                  signature: str = SIGN) -> None:
    assert request.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert request.headers["Api-Key"] == KEY
    assert request.headers["Timestamp"] == timestamp
    assert request.headers["Sign"] == signature


# -- signing ---------------------------------------------------------------------------------


def test_sign_worked_example() -> None:
    assert sign("bDqJFiq9", "7bz1lzh9", "1630468800") == SIGN


async def test_timestamp_and_sign_follow_the_clock() -> None:
    clock = Clock(NOW)
    client, fake = await make(lambda request: SEED_000_ANSWER, clock=clock)

    await client.send_custom(business_phone="1", recipient="2", message={"type": "text"})
    clock.now = NOW + timedelta(seconds=61, microseconds=999_999)
    await client.send_custom(business_phone="1", recipient="2", message={"type": "text"})
    # Another zone, the same instant: epoch seconds do not care.
    clock.now = NOW.astimezone(timezone(timedelta(hours=8)))
    await client.send_custom(business_phone="1", recipient="2", message={"type": "text"})

    assert_signed(fake.requests[0])
    assert_signed(fake.requests[1], "1630468861", sign(KEY, SECRET, "1630468861"))
    assert_signed(fake.requests[2])


async def test_a_naive_clock_is_refused() -> None:
    client, fake = await make(lambda request: SEED_000_ANSWER,
                              clock=Clock(datetime(2021, 9, 1)))
    with pytest.raises(ValueError, match="aware"):
        await client.send_custom(business_phone="1", recipient="2", message={"type": "text"})
    assert fake.requests == []


# -- wa/custom/sendMsg -----------------------------------------------------------------------


async def test_send_custom_text() -> None:
    client, fake = await make(lambda request: SEED_000_ANSWER)

    accepted = await client.send_custom(
        business_phone="91856321321", recipient="91856321322",
        message={"type": "text", "text": {"body": "this is body content"}})

    assert accepted == WhatsAppAccepted("10415ecbd0c848ebb7d5a3fe53269df6",
                                        datetime(2023, 9, 4, 7, 53, 11, tzinfo=UTC))
    [request] = fake.requests
    assert request.method == "POST"
    assert str(request.url) == "https://api.itniotech.com/wa/custom/sendMsg"
    assert_signed(request)
    # seed 000's text example, as sent
    assert fake.bodies() == [{"appId": "DGziZf5u", "businessPhone": "91856321321",
                              "recipient": "91856321322", "channelType": 0, "type": "text",
                              "text": {"body": "this is body content"}}]


async def test_send_custom_reply_quotes_the_inbound_message() -> None:
    client, fake = await make(lambda request: SEED_000_ANSWER)

    await client.send_custom(business_phone="17376111187", recipient="8618099900000",
                             message={"type": "text", "text": {"body": "this is body content"}},
                             reply_to="1")

    assert fake.bodies()[0]["context"] == {"refMessageId": "1"}


async def test_send_custom_refuses_to_let_the_message_override_the_envelope() -> None:
    client, fake = await make(lambda request: SEED_000_ANSWER)
    with pytest.raises(ValueError, match="appId"):
        await client.send_custom(business_phone="1", recipient="2",
                                 message={"type": "text", "appId": "other"})
    assert fake.requests == []


async def test_the_misspelt_timestamp_of_the_field_table_is_read_too() -> None:
    answer = {"status": "0", "reason": "success",
              "data": {"channelType": 0, "messageId": "m1", "imestamp": 1693813991000}}
    client, _ = await make(lambda request: answer)

    accepted = await client.send_custom(business_phone="1", recipient="2",
                                        message={"type": "text"})

    assert accepted == WhatsAppAccepted("m1", datetime(2023, 9, 4, 7, 53, 11, tzinfo=UTC))


async def test_an_unreadable_timestamp_is_none() -> None:
    answer = {"status": "0", "data": {"messageId": "m1", "timestamp": "soon"}}
    client, _ = await make(lambda request: answer)
    accepted = await client.send_custom(business_phone="1", recipient="2",
                                        message={"type": "text"})
    assert accepted == WhatsAppAccepted("m1", None)


async def test_whatsapp_needs_its_app_id() -> None:
    client, fake = await make(lambda request: SEED_000_ANSWER, wa_app_id=None)
    with pytest.raises(RuntimeError, match="wa_app_id"):
        await client.send_custom(business_phone="1", recipient="2", message={"type": "text"})
    assert fake.requests == []


# -- wa/template/sendMsg ---------------------------------------------------------------------


async def test_send_template() -> None:
    client, fake = await make(lambda request: FORMATS_1_ANSWER)
    components = [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x/y.jpg"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Alice"},
                                        {"type": "text", "text": "A-1001"}]},
        {"type": "button", "sub_type": "quick_reply", "index": "1",
         "parameters": [{"type": "payload", "payload": "STOP"}]},
    ]

    accepted = await client.send_template(business_phone="91856321412",
                                          recipient="8613800000000", name="order_update",
                                          language="en", components=components)

    assert accepted == WhatsAppAccepted("1786543210987654321",
                                        datetime.fromtimestamp(1718000000, UTC))
    [request] = fake.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/wa/template/sendMsg")
    assert_signed(request)
    assert fake.bodies() == [{
        "appId": "DGziZf5u", "channelType": 0, "recipient": "8613800000000",
        "businessPhone": "91856321412",
        "template": {"name": "order_update", "language": {"code": "en"},
                     "components": components},
    }]


async def test_send_template_without_variables_sends_no_components() -> None:
    client, fake = await make(lambda request: FORMATS_1_ANSWER)
    await client.send_template(business_phone="1", recipient="2", name="hello",
                               language="zh_TW", components=[])
    assert fake.bodies()[0]["template"] == {"name": "hello", "language": {"code": "zh_TW"}}


# -- wa/template/add -------------------------------------------------------------------------


async def test_add_template() -> None:
    client, fake = await make(lambda request: SEED_001_ANSWER)
    # seed 001's first example, without the envelope the client fills in
    template = {
        "templateName": "dd_template", "type": 1, "language": "zh_CN",
        "components": {
            "header": {"type": "HEADER", "format": 0, "text": "智能otp正在{{#}}活动中",
                       "example": {"header_text": ["打折"]}},
            "body": {"type": "BODY", "text": "公司新开业, {{#}}活动火热进行中....",
                     "example": {"body_text": [["打折"]]}},
            "footer": {"type": "FOOTER", "text": "颂量科技"},
        },
    }

    data = await client.add_template({**template, "appId": "stale", "channelType": 3})

    assert data == SEED_001_ANSWER["data"]
    [request] = fake.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/wa/template/add")
    assert_signed(request)
    assert fake.bodies() == [{**template, "appId": "DGziZf5u", "channelType": 0}]


async def test_add_template_speaks_the_template_table() -> None:
    client, _ = await make(lambda request: {"status": "-10", "reason": "app not found"})
    with pytest.raises(VendorRejected) as caught:
        await client.add_template({"templateName": "x"})
    assert (caught.value.code, caught.value.meaning) == ("-10", "application does not exist")


async def test_add_template_without_data_is_unknown() -> None:
    client, _ = await make(lambda request: {"status": "0", "reason": "success"})
    with pytest.raises(OutcomeUnknown):
        await client.add_template({"templateName": "x"})


# -- wa/template/query -----------------------------------------------------------------------


async def test_query_templates_reads_the_seeds_long_real_answer() -> None:
    client, fake = await make(lambda request: httpx.Response(200, text=SEED_003_ANSWER))

    found = await client.query_templates(template_id="e66a5e3780d54b02adf1c280c10e90dd",
                                         language="zh_CN")

    [request] = fake.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/wa/template/query")
    assert_signed(request)
    assert fake.bodies() == [{"appId": "DGziZf5u",
                              "templateId": "e66a5e3780d54b02adf1c280c10e90dd",
                              "languageCode": "zh_CN"}]

    assert len(found) == 13
    assert [t.name for t in found][:3] == ["shenfenyanz0904001", "test121", "xk_template"]
    failed = found[0]
    assert failed == RemoteTemplate(
        template_id="e66a5e3780d54b02adf1c280c10e90dd", name="shenfenyanz0904001",
        language="zh_CN", status="FAILED", category="AUTHENTICATION",
        components={"body": {"type": 0, "text": "{{#}}是您的验证码。", "exampleParams": [""]},
                    "footer": "这组验证码将在10分钟后过期",
                    "buttons": [{"type": 3, "text": "复制", "otp_type": "COPY_CODE"}]},
        reason="Network exception ,Read Timed Out :I/O error on POST request for "
               '"https://graph.facebook.com/v17.0/113252591875166/message_templates": '
               "Connection reset; nested exception is java.net.SocketException: "
               "Connection reset")
    assert found[2].components == {"header": {"type": 0, "text": "深圳"},
                                   "body": {"type": 0, "text": "大楚兴"}, "footer": "xk"}
    assert (found[2].status, found[2].category, found[2].reason) == \
        ("APPROVED", "MARKETING", "APPROVED")
    assert found[8].language == "zh_TW"
    assert found[10].status == "PENDING_DELETION"
    carousel = found[12]
    assert (carousel.template_id, carousel.name, carousel.language, carousel.category) == \
        ("6471535898c24c51b65f4803a0d124a0", "carsouel_template_01", "en", "MARKETING")
    assert set(carousel.components) == {"body", "cards"}
    assert len(carousel.components["cards"]) == 2
    assert carousel.components["cards"][1]["buttons"][1]["phoneNumber"] == "35266541"


async def test_query_templates_data_as_one_object() -> None:
    answer = {"status": "0", "reason": "success", "data": {
        "appId": "xJdRmKR3ff", "templateId": "t1", "templateName": "two_languages",
        "templateCategory": 2,
        "templateLanList": [
            {"language": {"code": "en"}, "body": {"type": 0, "text": "Hi"}, "status": "APPROVED",
             "reason": "APPROVED"},
            {"language": {"code": "zh_CN"}, "body": {"type": 0, "text": "你好"},
             "status": "REJECTED", "reason": "INVALID_FORMAT"},
        ]}}
    client, fake = await make(lambda request: answer)

    found = await client.query_templates()

    assert fake.bodies() == [{"appId": "DGziZf5u"}]
    assert [(t.template_id, t.language, t.status, t.category, t.reason) for t in found] == [
        ("t1", "en", "APPROVED", "UTILITY", "APPROVED"),
        ("t1", "zh_CN", "REJECTED", "UTILITY", "INVALID_FORMAT"),
    ]


@pytest.mark.parametrize("data", [None, []])
async def test_query_templates_nothing_found(data: Any) -> None:
    client, _ = await make(lambda request: {"status": "0", "reason": "success", "data": data})
    assert await client.query_templates() == []


async def test_query_templates_skips_what_it_cannot_read() -> None:
    answer = {"status": "0", "data": [
        "junk", {"templateId": "no-languages"},
        {"templateId": "t2", "templateName": "n", "templateLanList": ["junk", {}]}]}
    client, _ = await make(lambda request: answer)

    assert await client.query_templates() == [
        RemoteTemplate(template_id="t2", name="n", language="", status="UNKNOWN",
                       category=None, components={}, reason=None)]


async def test_query_templates_data_of_another_kind_is_unknown() -> None:
    client, _ = await make(lambda request: {"status": "0", "data": "yes"})
    with pytest.raises(OutcomeUnknown):
        await client.query_templates()


# -- sms/sendSms/batch -----------------------------------------------------------------------


async def test_send_sms_as_in_the_seed() -> None:
    client, fake = await make(lambda request: SEED_002_ANSWER)
    items = [SmsItem("91856321412", "test message", order_id="56584"),
             SmsItem("91856321414", "test message1", order_id="56586"),
             SmsItem("91856321413", "test message", order_id="56585")]

    submitted = await client.send_sms(items)

    [request] = fake.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/sms/sendSms/batch")
    assert_signed(request)
    assert fake.bodies() == [{"appId": "4luaKsL2", "array": [
        {"numbers": "91856321412,91856321413", "content": "test message",
         "orderId": "56584,56585"},
        {"numbers": "91856321414", "content": "test message1", "orderId": "56586"},
    ]}]
    # In input order; the seed's answer leaves out the second array entry's number.
    assert submitted == [
        SmsSubmitted("91856321412", "56584", "2207201629421000001", True, None),
        SmsSubmitted("91856321414", "56586", None, False,
                     "no result for this number in the answer"),
        SmsSubmitted("91856321413", "56585", "2207201629421000002", True, None),
    ]


async def test_send_sms_groups_by_content_sender_and_order_ids() -> None:
    def handler(request: httpx.Request) -> dict[str, Any]:
        numbers = [n for e in json.loads(request.content)["array"] for n in e["numbers"].split(",")]
        return {"status": "0", "array": [{"msgId": f"m{n}", "number": n} for n in numbers]}

    client, fake = await make(handler)
    items = [SmsItem("1001", "a"), SmsItem("1002", "a", sender_id="BRAND"),
             SmsItem("1003", "b"), SmsItem("1004", "a"), SmsItem("1005", "a", order_id="o5"),
             SmsItem("1006", "a", sender_id="BRAND")]

    submitted = await client.send_sms(items)

    assert fake.bodies()[0]["array"] == [
        {"numbers": "1001,1004", "content": "a"},
        {"numbers": "1002,1006", "content": "a", "senderId": "BRAND"},
        {"numbers": "1003", "content": "b"},
        {"numbers": "1005", "content": "a", "orderId": "o5"},
    ]
    assert [(s.number, s.msg_id, s.accepted) for s in submitted] == [
        (n, f"m{n}", True) for n in ("1001", "1002", "1003", "1004", "1005", "1006")]


async def test_send_sms_2500_numbers_take_three_calls_with_aligned_order_ids() -> None:
    def handler(request: httpx.Request) -> dict[str, Any]:
        rows = []
        for entry in json.loads(request.content)["array"]:
            numbers, orders = entry["numbers"].split(","), entry["orderId"].split(",")
            assert len(numbers) == len(orders)
            rows += [{"msgId": f"m-{o}", "number": n, "orderId": o}
                     for n, o in zip(numbers, orders, strict=True)]
        return {"status": "0", "reason": "success", "success": str(len(rows)), "fail": "0",
                "array": rows}

    client, fake = await make(handler)
    # Two contents interleaved, so groups cross the call boundaries.
    items = [SmsItem(f"91{i:09d}", f"content {i % 2}", order_id=f"o{i}") for i in range(2500)]

    submitted = await client.send_sms(items)

    counts = [sum(len(e["numbers"].split(",")) for e in body["array"]) for body in fake.bodies()]
    assert counts == [1000, 1000, 500]
    sent = {}
    for body in fake.bodies():
        for entry in body["array"]:
            for number, order in zip(entry["numbers"].split(","), entry["orderId"].split(","),
                                     strict=True):
                sent[order] = (number, entry["content"])
    assert sent == {f"o{i}": (f"91{i:09d}", f"content {i % 2}") for i in range(2500)}
    assert submitted == [SmsSubmitted(f"91{i:09d}", f"o{i}", f"m-o{i}", True, None)
                         for i in range(2500)]


async def test_send_sms_fail_array_with_a_non_zero_status_is_a_result_not_an_error() -> None:
    client, _ = await make(lambda request: FAIL_ARRAY_ANSWER)

    submitted = await client.send_sms([SmsItem("9112345678", "hello")])

    assert submitted == [SmsSubmitted("9112345678", None, "2509102134011228732", False,
                                      "DST_MCCMNC_LIMIT")]


async def test_send_sms_accepted_and_failed_in_one_answer() -> None:
    answer = {"status": "0", "success": "1", "fail": "1",
              "array": [{"msgId": "a1", "number": "1001", "orderId": "x"}],
              "failArray": [{"msgId": "f2", "number": "1002"}]}
    client, _ = await make(lambda request: answer)

    submitted = await client.send_sms([SmsItem("1001", "c", order_id="x"),
                                       SmsItem("1002", "c", order_id="y")])

    assert submitted == [SmsSubmitted("1001", "x", "a1", True, None),
                         SmsSubmitted("1002", "y", "f2", False, "refused")]


async def test_send_sms_the_same_number_twice_is_matched_in_order() -> None:
    answer = {"status": "0", "array": [{"msgId": "first", "number": "1001"},
                                       {"msgId": "second", "number": "1001"}]}
    client, _ = await make(lambda request: answer)

    submitted = await client.send_sms([SmsItem("1001", "c"), SmsItem("1001", "c")])

    assert [s.msg_id for s in submitted] == ["first", "second"]


async def test_send_sms_rejected_without_per_number_results() -> None:
    client, _ = await make(lambda request: {"status": "-10", "reason": "balance", "success": "0",
                                            "fail": "1", "array": []})
    with pytest.raises(VendorRejected) as caught:
        await client.send_sms([SmsItem("1001", "c")])
    assert (caught.value.code, caught.value.meaning) == ("-10", "balance insufficient")


async def test_send_sms_success_without_per_number_results_is_unknown() -> None:
    client, _ = await make(lambda request: {"status": "0", "success": "1", "fail": "0"})
    with pytest.raises(OutcomeUnknown):
        await client.send_sms([SmsItem("1001", "c")])


async def test_send_sms_a_failed_second_call_carries_the_first_calls_results() -> None:
    calls = []

    def handler(request: httpx.Request) -> Answer:
        calls.append(request)
        if len(calls) == 2:
            return httpx.ReadTimeout("slow", request=request)
        numbers = [n for e in json.loads(request.content)["array"] for n in e["numbers"].split(",")]
        return {"status": "0", "array": [{"msgId": f"m{n}", "number": n} for n in numbers]}

    client, fake = await make(handler)
    items = [SmsItem(str(10_000 + i), "c") for i in range(1500)]

    with pytest.raises(OutcomeUnknown) as caught:
        await client.send_sms(items)

    assert len(fake.requests) == 2
    assert caught.value.completed == tuple(
        SmsSubmitted(str(10_000 + i), None, f"m{10_000 + i}", True, None) for i in range(1000))


async def test_send_sms_nothing_to_send() -> None:
    client, fake = await make(lambda request: SEED_002_ANSWER)
    assert await client.send_sms([]) == []
    assert fake.requests == []


@pytest.mark.parametrize("item", [SmsItem("1001,1002", "c"), SmsItem("1001", "c", order_id="a,b")])
async def test_send_sms_refuses_commas(item: SmsItem) -> None:
    client, fake = await make(lambda request: SEED_002_ANSWER)
    with pytest.raises(ValueError, match="commas"):
        await client.send_sms([item])
    assert fake.requests == []


async def test_sms_needs_its_app_id() -> None:
    client, _ = await make(lambda request: SEED_002_ANSWER, sms_app_id=None)
    with pytest.raises(RuntimeError, match="sms_app_id"):
        await client.send_sms([SmsItem("1001", "c")])
    with pytest.raises(RuntimeError, match="sms_app_id"):
        await client.get_sms_reports(["m1"])


# -- sms/getReport ---------------------------------------------------------------------------


async def test_get_sms_reports() -> None:
    client, fake = await make(lambda request: REPORT_ANSWER)

    reports = await client.get_sms_reports(
        ["2207201629421000001", "2207201629421000002", "2207201629421000003", "unknown"])

    [request] = fake.requests
    assert request.method == "GET"
    assert str(request.url) == (
        f"{BASE}/sms/getReport?appId=4luaKsL2"
        "&msgIds=2207201629421000001,2207201629421000002,2207201629421000003,unknown")
    assert request.url.params["msgIds"].split(",")[-1] == "unknown"
    assert request.content == b""
    assert_signed(request)
    cst = timezone(timedelta(hours=8))
    assert reports == [
        SmsReport("2207201629421000001", "91856321412", "delivered",
                  datetime(2021, 2, 12, 9, 30, 3, tzinfo=cst)),
        SmsReport("2207201629421000002", "91856321413", "pending", None),
        SmsReport("2207201629421000003", "91856321414", "failed",
                  datetime(2021, 2, 12, 9, 31, 0, tzinfo=cst)),
    ]


async def test_get_sms_reports_450_ids_take_three_calls() -> None:
    def handler(request: httpx.Request) -> dict[str, Any]:
        ids = request.url.params["msgIds"].split(",")
        return {"status": "0", "array": [{"msgId": i, "number": None, "status": "0"}
                                         for i in ids]}

    client, fake = await make(handler)
    ids = [f"{2207201629421000000 + i}" for i in range(450)]

    reports = await client.get_sms_reports(ids)

    assert [len(r.url.params["msgIds"].split(",")) for r in fake.requests] == [200, 200, 50]
    assert [r.msg_id for r in reports] == ids
    assert {r.status for r in reports} == {"delivered"}


async def test_get_sms_reports_reads_leniently() -> None:
    answer = {"status": "0", "array": [
        {"msgId": "a", "status": -1, "receiveTime": "2021-02-12T09:30:03"},  # no zone: no guess
        {"msgId": "b", "status": "7", "receiveTime": "yesterday"},
        {"number": "no id"}, "junk"]}
    client, _ = await make(lambda request: answer)

    assert await client.get_sms_reports(["a", "b"]) == [
        SmsReport("a", None, "pending", None), SmsReport("b", None, "pending", None)]


async def test_get_sms_reports_error_keeps_the_earlier_calls() -> None:
    def handler(request: httpx.Request) -> dict[str, Any]:
        if len(fake.requests) == 2:
            return {"status": "-15", "reason": "Frequent query"}
        return {"status": "0", "array": [{"msgId": i, "status": "1"}
                                         for i in request.url.params["msgIds"].split(",")]}

    client, fake = await make(handler)

    with pytest.raises(VendorRejected) as caught:
        await client.get_sms_reports([str(i) for i in range(250)])

    assert caught.value.meaning == "frequent query"
    assert [r.msg_id for r in caught.value.completed] == [str(i) for i in range(200)]


async def test_get_sms_reports_nothing_to_ask() -> None:
    client, fake = await make(lambda request: REPORT_ANSWER)
    assert await client.get_sms_reports([]) == []
    assert fake.requests == []


# -- errors ----------------------------------------------------------------------------------


async def send(client: ItnioClient) -> WhatsAppAccepted:
    return await client.send_custom(business_phone="1", recipient="2", message={"type": "text"})


@pytest.mark.parametrize(
    ("exc", "cls"),
    [(httpx.ConnectError, VendorUnavailable), (httpx.ConnectTimeout, VendorUnavailable),
     (httpx.PoolTimeout, VendorUnavailable), (httpx.ReadTimeout, OutcomeUnknown),
     (httpx.WriteTimeout, OutcomeUnknown), (httpx.RemoteProtocolError, OutcomeUnknown),
     (httpx.ReadError, OutcomeUnknown), (httpx.WriteError, OutcomeUnknown)],
    ids=lambda value: value.__name__,
)
async def test_transport_exceptions(exc: type[httpx.TransportError],
                                    cls: type[VendorError]) -> None:
    client, _ = await make(lambda request: exc("boom", request=request))

    with pytest.raises(cls) as caught:
        await send(client)

    assert type(caught.value) is cls
    assert isinstance(caught.value.__cause__, exc)
    assert caught.value.vendor == "itnio"
    assert caught.value.transient is True


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, VendorUnavailable), (502, VendorUnavailable), (503, VendorUnavailable),
     (504, VendorUnavailable), (400, VendorRejected), (401, VendorRejected),
     (403, VendorRejected), (404, VendorRejected), (500, OutcomeUnknown)],
)
async def test_http_statuses(status: int, cls: type[VendorError]) -> None:
    client, _ = await make(lambda request: httpx.Response(status, text="<html>nope</html>"))

    with pytest.raises(cls) as caught:
        await send(client)

    assert type(caught.value) is cls
    assert caught.value.http_status == status
    assert caught.value.code is None


async def test_a_4xx_with_a_vendor_status_keeps_it() -> None:
    answer = {"status": "-1", "reason": "Authentication error"}
    client, _ = await make(lambda request: httpx.Response(401, json=answer))

    with pytest.raises(VendorRejected) as caught:
        await send(client)

    assert (caught.value.code, caught.value.meaning, caught.value.http_status) == \
        ("-1", "authentication error", 401)


@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="<html>gateway says hi</html>"),
     httpx.Response(200, content=b"\xff\xfe not utf-8"),
     httpx.Response(200, content=b""),
     httpx.Response(200, json=["status", "0"]),
     httpx.Response(200, json={"reason": "no status"}),
     httpx.Response(200, json={"status": "0", "reason": "success"}),
     httpx.Response(200, json={"status": "0", "data": {"messageId": ""}})],
    ids=["html", "not-utf8", "empty", "list", "no-status", "no-data", "empty-message-id"],
)
async def test_answers_not_in_the_documented_shape_are_unknown(response: httpx.Response) -> None:
    client, _ = await make(lambda request: response)
    with pytest.raises(OutcomeUnknown):
        await send(client)


async def test_insufficient_balance() -> None:
    client, _ = await make(lambda request: {"status": "-68", "reason": "余额不足"})

    with pytest.raises(VendorRejected) as caught:
        await send(client)

    assert type(caught.value) is VendorRejected
    assert (caught.value.code, caught.value.meaning, caught.value.transient) == \
        ("-68", "insufficient balance", False)


async def test_window_closed() -> None:
    answer = {"status": "131047", "reason": "Re-engagement message"}
    client, _ = await make(lambda request: answer)

    with pytest.raises(WindowClosed) as caught:
        await send(client)

    assert caught.value.meaning == "more than 24 hours since the recipient last replied"


async def test_status_as_a_number_is_read_too() -> None:
    client, _ = await make(lambda request: {"status": -16, "reason": "timestamp expires"})
    with pytest.raises(VendorRejected) as caught:
        await send(client)
    assert (caught.value.code, caught.value.meaning) == ("-16", "timestamp expires")
