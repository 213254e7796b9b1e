"""The vendor simulator (sender/simulator.py) against the vendors' own pages: answer shapes,
codes, signing, injected trouble, and the callbacks it posts back into replywindow."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver import parse_itnio, parse_yzj
from receiver.crypto import decode_key, decrypt
from receiver.events import ChatSeen, StatusReported, TemplateChanged
from sender.simulator import VendorSimulator

T = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
TOKEN = "hook-token"
AES_KEY = "replywindowTestVectorKey32bytes!"
BIZ, CUSTOMER = "91856321412", "91856321432"
STAFF, WX_CUSTOMER = "1688851873049028", "7881302848173300"


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """A stand-in for replywindow's webhook routes: keeps what it gets, answers `status`."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.app = Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        self.got.append((request.url.path, dict(request.headers), await request.body()))
        return Response('{"status":"0"}', status_code=self.status)

    def json(self, i: int) -> Any:
        return json.loads(self.got[i][2])


class Env:
    def __init__(self, sim: VendorSimulator, api: httpx.AsyncClient, hooks: Recorder,
                 clock: Clock) -> None:
        self.sim, self.api, self.hooks, self.clock = sim, api, hooks, clock

    def signed(self, *, key: str | None = None, secret: str | None = None,
               at: datetime | None = None, stamp: str | None = None) -> dict[str, str]:
        key, secret = key or self.sim.api_key, secret or self.sim.api_secret
        stamp = stamp or str(int((at or self.clock.now).timestamp()))
        return {"Api-Key": key, "Timestamp": stamp,
                "Sign": hashlib.md5((key + secret + stamp).encode()).hexdigest(),
                "Content-Type": "application/json;charset=UTF-8"}

    async def itnio(self, path: str, body: Any, **sign: Any) -> dict[str, Any]:
        answer = await self.api.post(path, json=body, headers=self.signed(**sign))
        assert answer.status_code == 200
        return answer.json()

    async def yzj(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.api.post(path, json=body)
        assert answer.status_code == 200
        return answer.json()

    async def token(self) -> str:
        answer = await self.yzj("/oauth/token", {"app_id": "sim-yzj",
                                                 "app_secret": "sim-yzj-secret",
                                                 "grand_type": "client_credentials"})
        return answer["data"]["access_token"]


@asynccontextmanager
async def harness(**options: Any) -> AsyncIterator[Env]:
    hooks, clock = Recorder(), Clock()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hooks.app),
                                 base_url="http://replywindow") as http:
        sim = VendorSimulator(callback_base_url="http://replywindow", webhook_token=TOKEN,
                              http=http, clock=clock, **options)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app),
                                     base_url="http://sim") as api:
            yield Env(sim, api, hooks, clock)


def run(test: Callable[[Env], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        async with harness(**options) as env:
            await test(env)

    asyncio.run(main())


def text_msg(recipient: str = CUSTOMER, body: str = "Your order has shipped",
             **extra: Any) -> dict[str, Any]:
    return {"appId": "simWA001", "businessPhone": BIZ, "recipient": recipient,
            "channelType": 0, "type": "text", "text": {"body": body}, **extra}


def template_msg(name: str, language: str, *params: str,
                 recipient: str = CUSTOMER) -> dict[str, Any]:
    components = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
    return {"appId": "simWA001", "channelType": 0, "recipient": recipient, "businessPhone": BIZ,
            "template": {"name": name, "language": {"code": language},
                         "components": components}}


def sms_batch(*groups: tuple[str, str, str | None]) -> dict[str, Any]:
    array = [{"numbers": numbers, "content": content, "senderId": ""}
             | ({"orderId": order} if order is not None else {})
             for numbers, content, order in groups]
    return {"appId": "simSMS01", "array": array}


# ---- signing (§0) ---------------------------------------------------------------------------

def test_signature_matches_the_vendors_worked_example() -> None:
    async def test(env: Env) -> None:
        env.clock.now = datetime.fromtimestamp(1630468800, UTC)
        headers = env.signed(stamp="1630468800")
        assert headers["Sign"] == "05d7a50893e22a5c4bb3216ae3396c7c"
        headers["Sign"] = headers["Sign"].upper()  # case-insensitive, says §0
        answer = await env.api.post("/wa/custom/sendMsg", json=text_msg(), headers=headers)
        assert answer.json()["status"] == "0"

    run(test, api_key="bDqJFiq9", api_secret="7bz1lzh9")


@pytest.mark.parametrize(("sign", "status", "reason"), [
    pytest.param({"secret": "wrong"}, "-1", "Authentication error", id="bad sign"),
    pytest.param({"key": "other", "secret": "sim-secret"}, "-1", "Authentication error",
                 id="unknown key"),
    pytest.param({"at": T - timedelta(seconds=301)}, "-16", "timestamp expires", id="stale"),
    pytest.param({"at": T + timedelta(seconds=301)}, "-16", "timestamp expires", id="future"),
    pytest.param({"stamp": "yesterday"}, "-16", "timestamp expires", id="not a number"),
])
def test_itnio_rejects_bad_signatures_and_stale_timestamps(sign: dict[str, Any], status: str,
                                                           reason: str) -> None:
    async def test(env: Env) -> None:
        assert await env.itnio("/wa/custom/sendMsg", text_msg(), **sign) == {
            "status": status, "reason": reason}
        assert await env.itnio("/sms/sendSms/batch", sms_batch((CUSTOMER, "hi", None)),
                               **sign) == {"status": status, "reason": reason}
        assert env.sim.sent("whatsapp") == env.sim.sent("sms") == []
        assert env.sim.pending_callbacks == []

    run(test)


def test_timestamp_edges_and_milliseconds() -> None:
    async def test(env: Env) -> None:
        for at in (T - timedelta(seconds=300), T + timedelta(seconds=300)):
            assert (await env.itnio("/wa/custom/sendMsg", text_msg(), at=at))["status"] == "0"
        # Seed 001's own sample sends a millisecond Timestamp.
        stamp = str(int(T.timestamp() * 1000))
        assert (await env.itnio("/wa/custom/sendMsg", text_msg(), stamp=stamp))["status"] == "0"

    run(test)


def test_app_ids_are_checked_per_channel() -> None:
    async def test(env: Env) -> None:
        wrong = text_msg() | {"appId": "simSMS01"}
        assert await env.itnio("/wa/custom/sendMsg", wrong) == {
            "status": "-32", "reason": "API Key has no permission for the application"}
        batch = sms_batch((CUSTOMER, "hi", None)) | {"appId": "simWA001"}
        assert (await env.itnio("/sms/sendSms/batch", batch))["status"] == "-32"
        # The template pages (seeds 001, 003) have their own codes for the same checks.
        assert (await env.itnio("/wa/template/query", {"appId": "nope"}))["status"] == "-10"
        stale = await env.itnio("/wa/template/query", {"appId": "simWA001"},
                                at=T - timedelta(hours=1))
        assert stale["status"] == "-4"

    run(test)


# ---- WhatsApp custom messages (seed 000, §2b) -----------------------------------------------

def test_custom_text_answer_record_and_status_pushes() -> None:
    async def test(env: Env) -> None:
        answer = await env.itnio("/wa/custom/sendMsg",
                                 text_msg(context={"refMessageId": "wamid.X"}))
        assert answer["status"] == "0" and answer["reason"] == "success"
        data = answer["data"]
        assert set(data) == {"channelType", "messageId", "timestamp"}
        assert data["channelType"] == 0 and data["timestamp"] == int(T.timestamp())
        assert re.fullmatch(r"\d{19}", data["messageId"])

        [sent] = env.sim.sent("whatsapp")
        assert sent["recipient"] == CUSTOMER and sent["business_phone"] == BIZ
        assert sent["vendor_message_id"] == data["messageId"] and sent["route"] == "custom"
        assert sent["text"] == "Your order has shipped" and sent["reply_to"] == "wamid.X"
        [call] = env.sim.calls
        assert call.path == "/wa/custom/sendMsg" and call.body["recipient"] == CUSTOMER
        assert call.headers["api-key"] == "sim-key"

        assert await env.sim.deliver_callbacks() == 2
        assert env.sim.pending_callbacks == []
        paths = {path for path, _, _ in env.hooks.got}
        assert paths == {f"/webhooks/itnio/whatsapp/{TOKEN}"}
        assert env.hooks.got[0][1]["content-type"] == "application/json;charset=UTF-8"
        sent_push, delivered = env.hooks.json(0), env.hooks.json(1)
        assert sent_push["status"] == "sent" and delivered["status"] == "delivered"
        assert delivered == {
            "appId": "simWA001", "channelType": 0, "messageId": data["messageId"],
            "eventType": "message-status-event", "form": BIZ, "recipient": CUSTOMER,
            "billable": "true", "status": "delivered",
            "conversationId": delivered["conversationId"],
            "expiresAt": delivered["expiresAt"], "conversationType": "service",
            "timestamp": delivered["timestamp"]}
        assert "from" not in delivered  # the documented spelling is `form`
        assert sent_push["timestamp"] < delivered["timestamp"]

    run(test)


def test_outcomes_read_failed_and_silent() -> None:
    async def test(env: Env) -> None:
        env.sim.set_outcome("8613800000001", "read")
        env.sim.set_outcome("8613800000002", "failed:131047")
        env.sim.set_outcome("8613800000003", "failed:131050")
        env.sim.set_outcome("8613800000004", "silent")
        for n in range(1, 5):
            assert (await env.itnio("/wa/custom/sendMsg",
                                    text_msg(f"861380000000{n}")))["status"] == "0"
        assert await env.sim.deliver_callbacks() == 5
        pushes = [env.hooks.json(i) for i in range(5)]
        assert [(p["recipient"][-1], p["status"]) for p in pushes] == [
            ("1", "sent"), ("1", "delivered"), ("1", "read"), ("2", "failed"), ("3", "failed")]
        assert pushes[3]["failure"] == "131047: Re-engagement message"
        assert pushes[3]["billable"] == "false" and "conversationId" not in pushes[3]
        assert pushes[4]["failure"].startswith("131050: ")
        assert "conversationId" not in pushes[2]  # read: only sent/delivered carry it (§2b)

    run(test)


def test_enforce_window_fails_custom_sends_without_a_recent_inbound() -> None:
    async def test(env: Env) -> None:
        env.sim.enforce_window = True
        await env.itnio("/wa/custom/sendMsg", text_msg())
        env.sim.customer_writes_whatsapp(BIZ, CUSTOMER, "hi", at=T - timedelta(hours=1))
        await env.itnio("/wa/custom/sendMsg", text_msg())
        statuses = [json.loads(c.body)["status"] for c in env.sim.pending_callbacks
                    if b"message-status-event" in c.body]
        assert statuses == ["failed", "sent", "delivered"]

    run(test)


@pytest.mark.parametrize(("change", "status"), [
    pytest.param({"text": {}}, "-115", id="no body"),
    pytest.param({"text": None}, "-114", id="no text"),
    pytest.param({"recipient": "123456789012345"}, "-70", id="recipient 15 digits"),
    pytest.param({"recipient": "123456"}, "-71", id="recipient 6 digits"),
    pytest.param({"recipient": "+8613800000"}, "-72", id="recipient not digits"),
    pytest.param({"businessPhone": "123"}, "-94", id="business phone short"),
    pytest.param({"channelType": 1}, "-112", id="channelType 1"),
    pytest.param({"type": "poll"}, "-132", id="unknown type"),
    pytest.param({"type": "image", "image": {"caption": "x"}}, "-117", id="image no link"),
    pytest.param({"type": "image", "image": {"link": "abc.png"}}, "-133", id="bad link"),
    pytest.param({"type": "location", "location": {"latitude": "1"}}, "-128", id="no longitude"),
    pytest.param({"type": "interactive", "interactive": {"type": "grid"}}, "-165",
                 id="interactive type"),
    pytest.param({"type": "interactive", "interactive": {
        "type": "carousel", "body": {"text": "b"},
        "action": {"cards": [{"card_index": 0}]}}}, "-305", id="carousel one card"),
])
def test_custom_validation_codes(change: dict[str, Any], status: str) -> None:
    async def test(env: Env) -> None:
        answer = await env.itnio("/wa/custom/sendMsg", text_msg() | change)
        assert answer["status"] == status and "data" not in answer
        assert env.sim.sent("whatsapp") == [] and env.sim.pending_callbacks == []

    run(test)


def test_carousel_and_media_are_accepted() -> None:
    card = {"card_index": 0, "type": "cta_url",
            "header": {"type": "image", "image": {"link": "https://x/y.png"}},
            "body": {"text": "Blue Echeveria"},
            "action": {"name": "cta_url",
                       "parameters": {"display_text": "Buy now", "url": "https://x/1"}}}
    carousel = {"type": "interactive", "interactive": {
        "type": "carousel", "body": {"text": "New arrivals"},
        "action": {"cards": [card, card | {"card_index": 1}]}}}

    async def test(env: Env) -> None:
        assert (await env.itnio("/wa/custom/sendMsg", text_msg() | carousel))["status"] == "0"
        bad = json.loads(json.dumps(carousel))
        bad["interactive"]["action"]["cards"][1]["card_index"] = 2
        assert (await env.itnio("/wa/custom/sendMsg", text_msg() | bad))["status"] == "-306"
        image = {"type": "image", "image": {"link": "https://x/y.png", "caption": "receipt"}}
        assert (await env.itnio("/wa/custom/sendMsg", text_msg() | image))["status"] == "0"
        assert [s["type"] for s in env.sim.sent("whatsapp")] == ["interactive", "image"]

    run(test)


# ---- templates (seeds 001, 003, §1, §2c) ------------------------------------------------------

SEED_001_TEMPLATE = {
    "appId": "simWA001", "channelType": 0, "templateName": "dd_template", "type": 1,
    "language": "zh_CN",
    "components": {
        "header": {"type": "HEADER", "format": 0, "text": "智能otp正在{{#}}活动中",
                   "example": {"header_text": ["打折"]}},
        "body": {"type": "BODY", "text": "公司新开业, {{#}}活动火热进行中....",
                 "example": {"body_text": [["打折"]]}},
        "footer": {"type": "FOOTER", "text": "颂量科技"}}}


def test_template_add_query_approve_send() -> None:
    async def test(env: Env) -> None:
        added = await env.itnio("/wa/template/add", SEED_001_TEMPLATE)
        assert added["status"] == "0"
        template_id = added["data"]["templateId"]
        assert added["data"] == {"templateId": template_id, "templateName": "dd_template",
                                 "type": 1, "languageCode": "zh_CN", "status": "PENDING"}
        assert (await env.itnio("/wa/template/add", SEED_001_TEMPLATE))["status"] == "-32"

        send = template_msg("dd_template", "zh_CN", "打折")
        send["template"]["components"].insert(
            0, {"type": "header", "parameters": [{"type": "text", "text": "促销"}]})
        assert await env.itnio("/wa/template/sendMsg", send) == {
            "status": "-44", "reason": "template send failed: template language not found"}

        queried = await env.itnio("/wa/template/query", {"appId": "simWA001"})
        assert queried["status"] == "0"
        [template] = queried["data"]
        assert template["templateId"] == template_id and template["templateCategory"] == 1
        assert template["templateLanList"] == [{
            "language": {"nameCn": "中文(CHN)", "nameEn": "Chinese (CHN)", "code": "zh_CN"},
            "header": {"type": 0, "text": "智能otp正在{{#}}活动中", "example": ["打折"]},
            "body": {"type": 0, "text": "公司新开业, {{#}}活动火热进行中....",
                     "exampleParams": ["打折"]},
            "footer": "颂量科技", "status": "PENDING", "reason": "PENDING"}]

        env.sim.approve_template("dd_template", "zh_CN")
        [push] = env.sim.pending_callbacks
        assert json.loads(push.body) == {
            "appId": "simWA001", "channelType": 0, "templateId": template_id,
            "templateName": "dd_template", "languageCode": "zh_CN", "status": "APPROVED",
            "reason": "NONE", "timestamp": int(T.timestamp()),
            "eventType": "template-status-event"}
        by_id = await env.itnio("/wa/template/query",
                                {"appId": "simWA001", "templateId": template_id})
        assert by_id["data"][0]["templateLanList"][0]["status"] == "APPROVED"

        answer = await env.itnio("/wa/template/sendMsg", send)
        assert answer["status"] == "0" and re.fullmatch(r"\d{19}", answer["data"]["messageId"])
        [sent] = env.sim.sent("whatsapp")
        assert sent["route"] == "template" and sent["text"] == "公司新开业, 打折活动火热进行中...."
        assert sent["template"] == {"name": "dd_template", "language": "zh_CN"}
        pushes = [json.loads(c.body) for c in env.sim.pending_callbacks[1:]]
        assert [p["status"] for p in pushes] == ["sent", "delivered"]
        assert pushes[0]["conversationType"] == "marketing"

    run(test)


def test_template_send_checks_language_and_variables() -> None:
    async def test(env: Env) -> None:
        env.sim.add_approved_template("order_update", "en", "Hi {{1}}, order {{2}} shipped")
        assert (await env.itnio("/wa/template/sendMsg",
                                template_msg("order_update", "en_US", "A", "B")))["status"] == "-44"
        assert (await env.itnio("/wa/template/sendMsg",
                                template_msg("order_update", "en", "A")))["status"] == "-134"
        assert (await env.itnio("/wa/template/sendMsg",
                                template_msg("order_update", "en", "A", "")))["status"] == "-135"
        ok = await env.itnio("/wa/template/sendMsg", template_msg("order_update", "en", "A", "B"))
        assert ok["status"] == "0"
        assert env.sim.sent("whatsapp")[0]["text"] == "Hi A, order B shipped"
        bad_phone = template_msg("order_update", "en", "A", "B", recipient="123")
        assert (await env.itnio("/wa/template/sendMsg", bad_phone))["status"] == "-71"

    run(test)


@pytest.mark.parametrize(("change", "status"), [
    pytest.param({"templateName": "Bad Name"}, "-33", id="name"),
    pytest.param({"type": 7}, "-76", id="type"),
    pytest.param({"language": "english!"}, "-74", id="language"),
    pytest.param({"components": None}, "-89", id="no components"),
    pytest.param({"channelType": 2}, "-99", id="channel"),
    pytest.param({"components": {"body": {"type": "BODY", "text": "a {{#}}{{#}}"}}}, "-34",
                 id="adjacent variables"),
    pytest.param({"components": {"body": {"type": "BODY"}}}, "-84", id="no body text"),
])
def test_template_add_codes(change: dict[str, Any], status: str) -> None:
    async def test(env: Env) -> None:
        assert (await env.itnio("/wa/template/add", SEED_001_TEMPLATE | change))["status"] == status

    run(test)


# ---- SMS (seed 002, §3) -----------------------------------------------------------------------

def test_sms_batch_answer_and_delivery_reports() -> None:
    async def test(env: Env) -> None:
        env.sim.set_outcome("91856321414", "failed:UNDELIV")
        answer = await env.itnio("/sms/sendSms/batch", sms_batch(
            ("91856321412,91856321413", "test message", "56584,56585"),
            ("91856321414", "test message1", "56586")))
        assert answer["status"] == "0" and answer["reason"] == "success"
        assert answer["success"] == "3" and answer["fail"] == "0" and "failArray" not in answer
        assert [(a["number"], a["orderId"]) for a in answer["array"]] == [
            ("91856321412", "56584"), ("91856321413", "56585"), ("91856321414", "56586")]
        ids = [a["msgId"] for a in answer["array"]]
        assert len(set(ids)) == 3 and all(re.fullmatch(r"\d{19}", i) for i in ids)
        assert [s["vendor_message_id"] for s in env.sim.sent("sms")] == ids

        assert await env.sim.deliver_callbacks() == 3
        assert {p for p, _, _ in env.hooks.got} == {f"/webhooks/itnio/sms/{TOKEN}"}
        first, _, failed = (env.hooks.json(i) for i in range(3))
        assert first == {"appId": "simSMS01", "msgid": ids[0], "mobile": "91856321412",
                         "status": 0, "reason": "0",
                         "timestamp": int(T.timestamp() * 1000) + 1000, "orderId": "56584",
                         "pricedetail": {"pay": "0.01", "currency": "USD", "chargeCnt": 1,
                                         "price": "0.01"}}
        assert failed["status"] == 1 and failed["reason"] == "UNDELIV"

    run(test)


def test_sms_batch_per_number_failures_and_limits() -> None:
    async def test(env: Env) -> None:
        mixed = await env.itnio("/sms/sendSms/batch",
                                sms_batch((f"{CUSTOMER},12ab,123", "hello", None)))
        assert mixed["status"] == "0" and (mixed["success"], mixed["fail"]) == ("1", "2")
        assert [f["number"] for f in mixed["failArray"]] == ["12ab", "123"]
        assert all(f["msgId"] and f["reason"] for f in mixed["failArray"])
        assert "orderId" not in mixed["array"][0]  # none was given
        only_bad = await env.itnio("/sms/sendSms/batch", sms_batch(("12ab", "hello", None)))
        assert only_bad["status"] == "-9" and only_bad["array"] == []
        assert len(only_bad["failArray"]) == 1 and only_bad["fail"] == "1"

        too_many = ",".join(str(8613800000000 + i) for i in range(1001))
        cases = [(sms_batch((too_many, "hi", None)), "-7"),
                 (sms_batch((CUSTOMER, "x" * 1025, None)), "-5"),
                 (sms_batch((CUSTOMER, "", None)), "-4"),
                 (sms_batch(("", "hi", None)), "-8"),
                 (sms_batch((f"{CUSTOMER},91856321433", "hi", "1")), "-22")]
        for body, status in cases:
            assert (await env.itnio("/sms/sendSms/batch", body))["status"] == status
        ok = ",".join(str(8613800000000 + i) for i in range(1000))
        assert (await env.itnio("/sms/sendSms/batch",
                                sms_batch((ok, "x" * 1024, None))))["success"] == "1000"

    run(test)


def test_sms_get_report() -> None:
    async def test(env: Env) -> None:
        env.sim.set_outcome("8613800000002", "failed:UNDELIV")
        env.sim.set_outcome("8613800000003", "pending")
        env.sim.set_outcome("8613800000004", "silent")
        numbers = ",".join(f"861380000000{n}" for n in range(1, 5))
        answer = await env.itnio("/sms/sendSms/batch", sms_batch((numbers, "hi", None)))
        ids = [a["msgId"] for a in answer["array"]]
        assert len(env.sim.pending_callbacks) == 2  # pending and silent push nothing

        report = await env.api.get("/sms/getReport", headers=env.signed(),
                                   params={"appId": "simSMS01",
                                           "msgIds": ",".join([*ids, "404"])})
        body = report.json()
        assert body["status"] == "0"
        assert (body["success"], body["fail"], body["sending"], body["nofound"]) == (
            "2", "1", "1", "1")
        assert [r["status"] for r in body["array"]] == ["0", "1", "-1", "0"]
        assert body["array"][0]["msgId"] == ids[0]
        assert body["array"][0]["number"] == "8613800000001"
        assert body["array"][0]["receiveTime"] == "2026-11-24T18:00:01+08:00"
        assert body["array"][2]["receiveTime"] == ""
        assert env.sim.calls[-1].method == "GET"
        assert env.sim.calls[-1].body["appId"] == "simSMS01"

        too_many = ",".join(str(i) for i in range(201))
        over = await env.api.get("/sms/getReport", headers=env.signed(),
                                 params={"appId": "simSMS01", "msgIds": too_many})
        assert over.json()["status"] == "-14"
        unsigned = await env.api.get("/sms/getReport", params={"appId": "simSMS01",
                                                                "msgIds": ids[0]})
        assert unsigned.json()["status"] == "-1"

    run(test)


# ---- 云真机 (§4a, seed 004, §4d) ------------------------------------------------------------

def test_yzj_token_checks_and_expiry() -> None:
    async def test(env: Env) -> None:
        base = {"app_id": "sim-yzj", "app_secret": "sim-yzj-secret",
                "grand_type": "client_credentials"}
        for change, errcode in [({"app_secret": "x"}, 40001), ({"app_id": "x"}, 40013),
                                ({"grand_type": None, "grant_type": "client_credentials"},
                                 40002)]:
            answer = await env.yzj("/oauth/token", base | change)
            assert answer["errcode"] == errcode and answer["message"]
        issued = await env.yzj("/oauth/token", base)
        assert issued["errcode"] == 0 and issued["data"]["expires_in"] == 7200
        token = issued["data"]["access_token"]

        send = {"app_id": "sim-yzj", "access_token": token, "wxid": STAFF,
                "target_wxid": WX_CUSTOMER,
                "messages": [{"msg_type": "text",
                              "content": {"items": [{"type": "text", "text": "hi"}]}}]}
        assert (await env.yzj("/wechat/sendMessage", send))["errcode"] == 0
        env.clock.now = T + timedelta(seconds=7199)
        assert (await env.yzj("/wechat/sendMessage", send))["errcode"] == 0
        env.clock.now = T + timedelta(seconds=7200)
        assert await env.yzj("/wechat/sendMessage", send) == {
            "errcode": 42001, "message": "access_token expired"}
        assert (await env.yzj("/wechat/sendMessage",
                              send | {"access_token": "nope"}))["errcode"] == 40014
        fresh = await env.token()
        assert (await env.yzj("/wechat/sendMessage",
                              send | {"access_token": fresh}))["errcode"] == 0
        env.sim.expire_tokens()
        assert (await env.yzj("/wechat/sendMessage",
                              send | {"access_token": fresh}))["errcode"] == 42001

    run(test)


def wecom_send(token: str, count: int, target: str = WX_CUSTOMER) -> dict[str, Any]:
    messages = [{"msg_type": "text", "content": {"items": [{"type": "text", "text": f"m{i}"}]},
                 "api_send_id": 116 + i} for i in range(count)]
    return {"app_id": "sim-yzj", "access_token": token, "wxid": STAFF, "target_wxid": target,
            "messages": messages}


def test_yzj_send_message_answer_and_encrypted_echoes() -> None:
    async def test(env: Env) -> None:
        token = await env.token()
        body = wecom_send(token, 2)
        body["messages"][1].pop("api_send_id")
        answer = await env.yzj("/wechat/sendMessage", body)
        assert answer["errcode"] == 0
        first, second = answer["data"]
        assert first["idx"] == 0 and first["api_send_id"] == "116"
        assert second["idx"] == 1 and "api_send_id" not in second
        assert first["api_send_svrid"] != second["api_send_svrid"]
        assert first["api_send_svrid"].startswith(f"{STAFF},{WX_CUSTOMER},")

        assert await env.sim.deliver_callbacks() == 2
        path, headers, raw = env.hooks.got[0]
        assert path == f"/webhooks/yzj/{TOKEN}"
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert not raw.startswith(b"[")  # encrypted: base64 text
        [envelope] = json.loads(decrypt(raw, decode_key(AES_KEY)))
        assert envelope["type"] == "chatMsg" and envelope["rel_wxid"] == STAFF
        assert envelope["corp_wxid"] == env.sim.yzj_corp_wxid
        [item] = envelope["data"]
        assert item["from_wxid"] == item["wxid"] == STAFF
        assert item["chat_wxid"] == item["to_wxid"] == WX_CUSTOMER
        assert item["api_send_id"] == "116"
        assert item["api_send_svrid"] == first["api_send_svrid"]
        assert item["svrid"] and item["msg_time"] == int(T.timestamp())
        assert item["msg_type"] == "text"
        assert item["content"] == {"items": [{"type": "text", "text": "m0"}]}
        [second_envelope] = json.loads(decrypt(env.hooks.got[1][2], decode_key(AES_KEY)))
        assert second_envelope["data"][0]["api_send_id"] == ""
        assert [s["text"] for s in env.sim.sent("wecom")] == ["m0", "m1"]

    run(test, yzj_aes_key=AES_KEY)


def test_yzj_send_failure_callback_and_limits() -> None:
    async def test(env: Env) -> None:
        token = await env.token()
        assert await env.yzj("/wechat/sendMessage", wecom_send(token, 6)) == {
            "errcode": 40035, "message": "invalid parameter: at most 5 messages per call"}
        bad = wecom_send(token, 1)
        bad["messages"][0]["msg_type"] = "hologram"
        assert (await env.yzj("/wechat/sendMessage", bad))["errcode"] == 40035
        assert (await env.yzj("/wechat/sendMessage",
                              wecom_send(token, 1) | {"app_id": "x"}))["errcode"] == 40013
        assert env.sim.sent("wecom") == [] and env.sim.pending_callbacks == []

        env.sim.set_outcome(WX_CUSTOMER, "failed:客户已删除")
        answer = await env.yzj("/wechat/sendMessage", wecom_send(token, 5))
        assert [d["idx"] for d in answer["data"]] == [0, 1, 2, 3, 4]
        assert await env.sim.deliver_callbacks() == 10
        kinds = [env.hooks.json(i)[0]["type"] for i in range(10)]
        assert kinds == ["chatMsg", "chatMsgSendFail"] * 5  # plaintext: no key configured
        [fail] = env.hooks.json(1)[0]["data"]
        assert fail == {"wxid": STAFF, "target_wxid": WX_CUSTOMER, "api_send_id": "116",
                        "api_send_svrid": answer["data"][0]["api_send_svrid"],
                        "msg_type": "text",
                        "content": {"items": [{"type": "text", "text": "m0"}]},
                        "errcode": 1, "errmsg": "客户已删除",
                        "fail_time": int(T.timestamp()) + 1}

        env.sim.set_outcome("R:10696051737614800", "silent")
        group = wecom_send(token, 1, target="R:10696051737614800")
        assert (await env.yzj("/wechat/sendMessage", group))["errcode"] == 0
        assert env.sim.pending_callbacks == []

    run(test)


# ---- injected trouble ---------------------------------------------------------------------------

def test_down_answers_503_everywhere_and_records_the_call() -> None:
    async def test(env: Env) -> None:
        env.sim.down = True
        wa = await env.api.post("/wa/custom/sendMsg", json=text_msg(), headers=env.signed())
        token = await env.api.post("/oauth/token", json={"app_id": "sim-yzj"})
        assert wa.status_code == token.status_code == 503
        assert len(env.sim.calls) == 2 and env.sim.sent("whatsapp") == []
        env.sim.down = False
        assert (await env.itnio("/wa/custom/sendMsg", text_msg()))["status"] == "0"

    run(test)


def test_fail_next_http_status_then_recovers() -> None:
    async def test(env: Env) -> None:
        env.sim.fail_next("/wa/custom/sendMsg", http_status=429, times=2)
        env.sim.fail_next("/oauth/token", http_status=502)
        for _ in range(2):
            answer = await env.api.post("/wa/custom/sendMsg", json=text_msg(),
                                        headers=env.signed())
            assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
        assert (await env.api.post("/oauth/token", json={})).status_code == 502
        assert env.sim.sent("whatsapp") == []
        assert (await env.itnio("/wa/custom/sendMsg", text_msg()))["status"] == "0"
        assert await env.token()

    run(test)


def test_fail_next_vendor_status() -> None:
    async def test(env: Env) -> None:
        env.sim.fail_next("/wa/custom/sendMsg", status="-68", reason="insufficient balance")
        env.sim.fail_next("/sms/sendSms/batch", status="-10")
        token = await env.token()
        env.sim.fail_next("/wechat/sendMessage", status="45009", reason="rate limited")
        assert await env.itnio("/wa/custom/sendMsg", text_msg()) == {
            "status": "-68", "reason": "insufficient balance"}
        assert (await env.itnio("/sms/sendSms/batch",
                                sms_batch((CUSTOMER, "hi", None))))["status"] == "-10"
        assert await env.yzj("/wechat/sendMessage", wecom_send(token, 1)) == {
            "errcode": 45009, "message": "rate limited"}
        assert env.sim.sent("whatsapp") == env.sim.sent("sms") == env.sim.sent("wecom") == []
        assert env.sim.pending_callbacks == []
        assert (await env.yzj("/wechat/sendMessage", wecom_send(token, 1)))["errcode"] == 0

    run(test)


def test_malformed_next_answers_200_not_json_and_sends_nothing() -> None:
    async def test(env: Env) -> None:
        env.sim.malformed_next("/wa/template/sendMsg")
        env.sim.add_approved_template("hello", "en", "Hello")
        answer = await env.api.post("/wa/template/sendMsg", json=template_msg("hello", "en"),
                                    headers=env.signed())
        assert answer.status_code == 200
        with pytest.raises(ValueError):
            answer.json()
        assert env.sim.sent("whatsapp") == []
        assert (await env.itnio("/wa/template/sendMsg",
                                template_msg("hello", "en")))["status"] == "0"

    run(test)


def test_delay_next_holds_the_answer_but_the_send_happened() -> None:
    async def test(env: Env) -> None:
        env.sim.delay_next("/wa/custom/sendMsg", 0.5)
        post = env.api.post("/wa/custom/sendMsg", json=text_msg(), headers=env.signed())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(post, 0.05)
        # The vendor took it: a blind resend would reach the customer twice.
        assert len(env.sim.sent("whatsapp")) == 1 and len(env.sim.pending_callbacks) == 2

        env.sim.delay_next("/oauth/token", 0.2)
        started = asyncio.get_running_loop().time()
        assert await env.token()
        assert asyncio.get_running_loop().time() - started >= 0.2

    run(test)


def test_injection_names_must_be_real_paths() -> None:
    sim = VendorSimulator()
    with pytest.raises(ValueError, match="no endpoint"):
        sim.fail_next("/wa/custom/send", http_status=500)
    with pytest.raises(ValueError, match="exactly one"):
        sim.fail_next("/wa/custom/sendMsg")
    with pytest.raises(ValueError, match="unknown outcome"):
        sim.set_outcome(CUSTOMER, "lost")


def test_unreadable_bodies_get_vendor_errors() -> None:
    async def test(env: Env) -> None:
        for path, status in [("/wa/custom/sendMsg", "-22"), ("/wa/template/add", "-7")]:
            answer = await env.api.post(path, content=b"{nope", headers=env.signed())
            assert answer.json()["status"] == status
        answer = await env.api.post("/oauth/token", content=b"{nope")
        assert answer.json()["errcode"] == 47001
        assert env.sim.calls[0].body == "{nope"

    run(test)


# ---- customers writing in, callbacks and replywindow's parsers ---------------------------------

def test_customer_messages_parse_as_replywindow_expects() -> None:
    async def test(env: Env) -> None:
        wamid = env.sim.customer_writes_whatsapp(BIZ, CUSTOMER, "hi, is my order shipped?",
                                                 at=T - timedelta(minutes=5))
        sms_id = env.sim.customer_writes_sms("918663322141", CUSTOMER, "STOP")
        svrid = env.sim.customer_writes_wecom(STAFF, WX_CUSTOMER, "你好")
        assert await env.sim.deliver_callbacks() == 3
        uplink, mo = env.hooks.json(0), env.hooks.json(1)
        assert uplink == {"appId": "simWA001", "channelType": 0, "messageId": wamid,
                          "timestamp": int((T - timedelta(minutes=5)).timestamp()),
                          "eventType": "up-message-event", "businessPhone": BIZ,
                          "from": {"phone": CUSTOMER, "name": "Customer"},
                          "message": {"type": "text",
                                      "text": {"body": "hi, is my order shipped?"}}}
        assert mo["msgid"] == sms_id and mo["reply_time"] == "2026-11-24 18:00:00"
        assert env.hooks.got[1][0] == f"/webhooks/itnio/sms/{TOKEN}"

        [seen] = parse_itnio.parse_whatsapp(env.hooks.got[0][2])
        assert isinstance(seen, ChatSeen) and seen.direction == "in"
        assert (seen.account, seen.customer, seen.text) == (BIZ, CUSTOMER,
                                                            "hi, is my order shipped?")
        [sms] = parse_itnio.parse_sms(env.hooks.got[1][2])
        assert isinstance(sms, ChatSeen) and sms.sent_at == T and sms.text == "STOP"
        [chat] = parse_yzj.parse(env.hooks.got[2][2], key=decode_key(AES_KEY))
        assert isinstance(chat, ChatSeen) and chat.direction == "in"
        assert (chat.account, chat.customer, chat.vendor_message_id) == (STAFF, WX_CUSTOMER,
                                                                        svrid)

    run(test, yzj_aes_key=AES_KEY)


def test_outbound_callbacks_parse_as_replywindow_expects() -> None:
    async def test(env: Env) -> None:
        env.sim.set_outcome(CUSTOMER, "failed:131047")
        message_id = (await env.itnio("/wa/custom/sendMsg", text_msg()))["data"]["messageId"]
        msg_id = (await env.itnio("/sms/sendSms/batch",
                                  sms_batch(("91856321499", "hi", "o-1"))))["array"][0]["msgId"]
        env.sim.add_approved_template("hello", "en", "Hello")
        env.sim.set_template_status("hello", "en", "PAUSED", "quality")
        env.sim.set_outcome(WX_CUSTOMER, "failed:频率限制")
        token = await env.token()
        svrid = (await env.yzj("/wechat/sendMessage",
                               wecom_send(token, 1)))["data"][0]["api_send_svrid"]
        events = []
        for callback in env.sim.pending_callbacks:
            if callback.url_path.endswith("whatsapp"):
                events += parse_itnio.parse_whatsapp(callback.body)
            elif callback.url_path.endswith("sms"):
                events += parse_itnio.parse_sms(callback.body)
            else:
                events += parse_yzj.parse(callback.body, key=None)
        wa_failed, sms_dlr, template, echo, fail = events
        assert isinstance(wa_failed, StatusReported) and wa_failed.status == "failed"
        assert (wa_failed.vendor_message_id, wa_failed.failure_code) == (message_id, "131047")
        assert isinstance(sms_dlr, StatusReported) and sms_dlr.status == "delivered"
        assert (sms_dlr.vendor_message_id, sms_dlr.client_ref) == (msg_id, "o-1")
        assert isinstance(template, TemplateChanged) and template.status == "PAUSED"
        assert isinstance(echo, StatusReported) and echo.status == "sent"
        assert (echo.vendor_message_id, echo.client_ref) == (svrid, "116")
        assert isinstance(fail, StatusReported) and fail.status == "failed"
        assert fail.failure_reason == "频率限制"

    run(test)


def test_deliver_callbacks_keeps_what_failed_in_order() -> None:
    async def test(env: Env) -> None:
        for n in range(3):
            env.sim.customer_writes_whatsapp(BIZ, CUSTOMER, f"m{n}")
        env.hooks.status = 500
        assert await env.sim.deliver_callbacks() == 0
        assert len(env.sim.pending_callbacks) == 3
        env.hooks.status = 200
        assert await env.sim.deliver_callbacks() == 3
        texts = [env.hooks.json(i)["message"]["text"]["body"] for i in range(3, 6)]
        assert texts == ["m0", "m1", "m2"] and env.sim.pending_callbacks == []

    run(test)


def test_deliver_callbacks_survives_connection_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
            sim = VendorSimulator(callback_base_url="http://rw", webhook_token=TOKEN, http=http)
            sim.customer_writes_sms("918663322141", CUSTOMER, "hi")
            assert await sim.deliver_callbacks() == 0
            assert len(sim.pending_callbacks) == 1

    asyncio.run(main())
    with pytest.raises(RuntimeError, match="callback_base_url"):
        asyncio.run(VendorSimulator().deliver_callbacks())


def test_non_ascii_credentials_are_refused_not_crashed() -> None:
    async def test(env: Env) -> None:
        headers = env.signed() | {"Api-Key": "clé"}
        answer = await env.api.post("/wa/custom/sendMsg", json=text_msg(),
                                    headers={k: v.encode() for k, v in headers.items()})
        assert answer.json()["status"] == "-1"
        token = await env.yzj("/oauth/token", {"app_id": "sim-yzj", "app_secret": "秘密",
                                               "grand_type": "client_credentials"})
        assert token["errcode"] == 40001

    run(test)
