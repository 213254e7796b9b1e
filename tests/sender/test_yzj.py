"""YzjClient against a recording MockTransport: token caching and renewal, WeCom sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sender.errors import OutcomeUnknown, VendorError, VendorRejected, VendorUnavailable
from sender.yzj import WecomAccepted, YzjClient

pytestmark = pytest.mark.anyio

BASE = "https://oapi-yzj.miaokol.com"
NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)

Answer = httpx.Response | dict[str, Any] | Exception
Handler = Callable[[httpx.Request], Answer | Awaitable[Answer]]

# seed 004, 响应示例, without its // comments
SEED_004_ANSWER = {"data": [{"idx": 0, "api_send_svrid": "168xxx,7xxx,1675997660116ABKocO",
                             "api_send_id": "116"}],
                   "errcode": 0}
# seed 004, the first two of its request example's messages
TEXT = {"msg_type": "text", "content": {"items": [{"type": "text", "text": "test"}]},
        "delayed_time": 1641280299}
PICTURE = {"msg_type": "picture", "content": {"url": "xxxxxxxxx"}, "delayed_time": 1641280299}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeYzj:
    """/oauth/token hands out tok-1, tok-2, ...; /wechat/sendMessage answers what the test says
    (by default every message accepted)."""

    def __init__(self, send: Handler | None = None, *, token: Handler | None = None) -> None:
        self.send = send or accept_all
        self.token = token or self.issue
        self.requests: list[httpx.Request] = []
        self.issued = 0

    def issue(self, request: httpx.Request) -> dict[str, Any]:
        self.issued += 1
        return {"errcode": 0, "data": {"access_token": f"tok-{self.issued}", "expires_in": 7200}}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.token if request.url.path == "/oauth/token" else self.send
        answer = handler(request)
        if isinstance(answer, Awaitable):
            answer = await answer
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, dict):
            return httpx.Response(200, json=answer)
        return answer

    def sends(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path != "/oauth/token"]

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/oauth/token"]


def accept_all(request: httpx.Request) -> dict[str, Any]:
    messages = json.loads(request.content)["messages"]
    return {"errcode": 0, "data": [{"idx": i, "api_send_svrid": f"svr-{m['api_send_id']}",
                                    "api_send_id": str(m["api_send_id"])}
                                   for i, m in enumerate(messages)]}


def make(fake: FakeYzj, clock: Clock | None = None) -> YzjClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return YzjClient(http, base_url=BASE + "/", app_id="app-1", app_secret="secret-1",
                     clock=clock or Clock(NOW))


def numbered(count: int) -> list[dict[str, Any]]:
    return [{**TEXT, "api_send_id": f"s{i}"} for i in range(count)]


# -- access token ----------------------------------------------------------------------------


async def test_access_token_request() -> None:
    fake = FakeYzj()
    client = make(fake)

    assert await client.access_token() == "tok-1"

    [request] = fake.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/oauth/token")
    assert request.headers["Content-Type"] == "application/json; charset=UTF-8"
    # sic: the vendor spells it grand_type
    assert json.loads(request.content) == {"app_id": "app-1", "app_secret": "secret-1",
                                           "grand_type": "client_credentials"}


async def test_access_token_is_cached_until_300_seconds_before_it_expires() -> None:
    clock = Clock(NOW)
    fake = FakeYzj()
    client = make(fake, clock)

    assert await client.access_token() == "tok-1"
    clock.now = NOW + timedelta(seconds=7200 - 300 - 1)
    assert await client.access_token() == "tok-1"
    assert fake.issued == 1

    clock.now = NOW + timedelta(seconds=7200 - 300)
    assert await client.access_token() == "tok-2"
    clock.now += timedelta(seconds=6899)
    assert await client.access_token() == "tok-2"
    assert fake.issued == 2


async def test_access_token_follows_expires_in_and_reads_a_flat_answer() -> None:
    clock = Clock(NOW)
    fake = FakeYzj(token=lambda request: {"access_token": "flat", "expires_in": 1000})
    client = make(fake, clock)

    assert await client.access_token() == "flat"
    clock.now = NOW + timedelta(seconds=699)
    await client.access_token()
    assert len(fake.token_requests()) == 1
    clock.now = NOW + timedelta(seconds=700)
    await client.access_token()
    assert len(fake.token_requests()) == 2


async def test_access_token_without_expires_in_assumes_7200() -> None:
    clock = Clock(NOW)
    fake = FakeYzj(token=lambda request: {"errcode": 0, "data": {"access_token": "t"}})
    client = make(fake, clock)

    await client.access_token()
    clock.now = NOW + timedelta(seconds=6899)
    await client.access_token()

    assert len(fake.token_requests()) == 1


async def test_concurrent_callers_share_one_renewal() -> None:
    fake = FakeYzj()

    async def slow_token(request: httpx.Request) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return fake.issue(request)

    fake.token = slow_token
    client = make(fake)

    tokens = await asyncio.gather(*(client.access_token() for _ in range(10)))

    assert tokens == ["tok-1"] * 10
    assert fake.issued == 1


async def test_access_token_refused() -> None:
    fake = FakeYzj(token=lambda request: {"errcode": 40001, "message": "app_secret错误"})
    client = make(fake)

    with pytest.raises(VendorRejected) as caught:
        await client.access_token()

    assert caught.value.code == "40001"
    assert caught.value.vendor == "yzj"


async def test_access_token_answer_without_a_token_means_try_later() -> None:
    # No message rides on a token call, so its failure is never "maybe sent".
    fake = FakeYzj(token=lambda request: {"errcode": 0, "data": {}})
    with pytest.raises(VendorUnavailable):
        await make(fake).access_token()


async def test_a_failed_renewal_is_not_cached() -> None:
    answers: list[Answer] = [httpx.ConnectError("refused"),
                             {"errcode": 0, "data": {"access_token": "t", "expires_in": 7200}}]
    fake = FakeYzj(token=lambda request: answers.pop(0))
    client = make(fake)

    with pytest.raises(VendorUnavailable):
        await client.access_token()
    assert await client.access_token() == "t"


# -- /wechat/sendMessage ---------------------------------------------------------------------


async def test_send_messages_as_in_the_seed() -> None:
    fake = FakeYzj(lambda request: SEED_004_ANSWER)
    client = make(fake)

    results = await client.send_messages(wxid="16xxx", target_wxid="7xxx",
                                         messages=[{**TEXT, "api_send_id": 116}])

    assert results == [WecomAccepted(0, "116", "168xxx,7xxx,1675997660116ABKocO", True)]
    request = fake.requests[-1]
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/wechat/sendMessage")
    assert request.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert fake.sends() == [{"app_id": "app-1", "access_token": "tok-1", "wxid": "16xxx",
                             "target_wxid": "7xxx",
                             "messages": [{**TEXT, "api_send_id": 116}]}]


async def test_fewer_data_entries_than_messages_means_the_rest_were_refused() -> None:
    fake = FakeYzj(lambda request: SEED_004_ANSWER)
    client = make(fake)

    results = await client.send_messages(
        wxid="16xxx", target_wxid="7xxx",
        messages=[{**TEXT, "api_send_id": "116"}, {**PICTURE, "api_send_id": "117"}])

    assert results == [WecomAccepted(0, "116", "168xxx,7xxx,1675997660116ABKocO", True),
                       WecomAccepted(1, "117", None, False)]


async def test_twelve_messages_take_three_calls_with_idx_over_the_whole_input() -> None:
    fake = FakeYzj()
    client = make(fake)

    results = await client.send_messages(wxid="w", target_wxid="t", messages=numbered(12))

    assert [len(body["messages"]) for body in fake.sends()] == [5, 5, 2]
    assert [m["api_send_id"] for body in fake.sends() for m in body["messages"]] == \
        [f"s{i}" for i in range(12)]
    assert results == [WecomAccepted(i, f"s{i}", f"svr-s{i}", True) for i in range(12)]
    assert len(fake.token_requests()) == 1


async def test_data_out_of_order_or_without_idx_is_matched() -> None:
    def answer(request: httpx.Request) -> dict[str, Any]:
        return {"errcode": 0, "data": [
            {"idx": "2", "api_send_svrid": "c"},
            {"api_send_id": "s0", "api_send_svrid": "a"},
            {"idx": 7, "api_send_svrid": "out of range"}, "junk"]}

    client = make(FakeYzj(answer))

    results = await client.send_messages(wxid="w", target_wxid="t", messages=numbered(3))

    assert results == [WecomAccepted(0, "s0", "a", True), WecomAccepted(1, "s1", None, False),
                       WecomAccepted(2, "s2", "c", True)]


@pytest.mark.parametrize("message", [{**TEXT}, {**TEXT, "api_send_id": None},
                                     {**TEXT, "api_send_id": ""}],
                         ids=["absent", "none", "empty"])
async def test_every_message_needs_an_api_send_id(message: dict[str, Any]) -> None:
    fake = FakeYzj()
    client = make(fake)

    with pytest.raises(ValueError, match="api_send_id"):
        await client.send_messages(wxid="w", target_wxid="t",
                                   messages=[*numbered(6), message])

    assert fake.requests == []


async def test_no_messages_no_call() -> None:
    fake = FakeYzj()
    assert await make(fake).send_messages(wxid="w", target_wxid="t", messages=[]) == []
    assert fake.requests == []


async def test_errcode_is_a_rejection_with_the_vendors_message() -> None:
    fake = FakeYzj(lambda request: {"errcode": 10001, "message": "企微号不在线"})

    with pytest.raises(VendorRejected) as caught:
        await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(1))

    assert (caught.value.vendor, caught.value.code, caught.value.meaning) == \
        ("yzj", "10001", "企微号不在线")
    assert len(fake.sends()) == 1  # a business refusal is not retried


async def test_an_invalid_token_is_renewed_once_and_the_call_resent() -> None:
    def answer(request: httpx.Request) -> dict[str, Any]:
        if json.loads(request.content)["access_token"] == "tok-1":
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return accept_all(request)

    fake = FakeYzj(answer)
    client = make(fake)

    results = await client.send_messages(wxid="w", target_wxid="t", messages=numbered(7))

    assert [body["access_token"] for body in fake.sends()] == ["tok-1", "tok-2", "tok-2"]
    assert [len(body["messages"]) for body in fake.sends()] == [5, 5, 2]
    assert results == [WecomAccepted(i, f"s{i}", f"svr-s{i}", True) for i in range(7)]
    assert await client.access_token() == "tok-2"


async def test_a_token_refused_twice_is_an_error_not_a_loop() -> None:
    fake = FakeYzj(lambda request: {"errcode": 40001, "errmsg": "invalid credential"})

    with pytest.raises(VendorRejected) as caught:
        await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(1))

    assert caught.value.code == "40001"
    assert len(fake.sends()) == 2
    assert len(fake.token_requests()) == 2


async def test_a_failed_later_call_carries_the_earlier_results() -> None:
    def answer(request: httpx.Request) -> Answer:
        if len(fake.sends()) == 2:
            return httpx.RemoteProtocolError("server disconnected", request=request)
        return accept_all(request)

    fake = FakeYzj(answer)

    with pytest.raises(OutcomeUnknown) as caught:
        await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(12))

    assert caught.value.completed == tuple(WecomAccepted(i, f"s{i}", f"svr-s{i}", True)
                                           for i in range(5))


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "cls"),
    [(httpx.ConnectError, VendorUnavailable), (httpx.ConnectTimeout, VendorUnavailable),
     (httpx.PoolTimeout, VendorUnavailable), (httpx.ReadTimeout, OutcomeUnknown),
     (httpx.WriteTimeout, OutcomeUnknown), (httpx.RemoteProtocolError, OutcomeUnknown),
     (httpx.ReadError, OutcomeUnknown)],
    ids=lambda value: value.__name__,
)
async def test_transport_exceptions(exc: type[httpx.TransportError],
                                    cls: type[VendorError]) -> None:
    fake = FakeYzj(lambda request: exc("boom", request=request))

    with pytest.raises(cls) as caught:
        await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(1))

    assert type(caught.value) is cls
    assert isinstance(caught.value.__cause__, exc)


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, VendorUnavailable), (502, VendorUnavailable), (503, VendorUnavailable),
     (504, VendorUnavailable), (400, VendorRejected), (403, VendorRejected),
     (404, VendorRejected), (500, OutcomeUnknown)],
)
async def test_http_statuses(status: int, cls: type[VendorError]) -> None:
    fake = FakeYzj(lambda request: httpx.Response(status, text="nope"))

    with pytest.raises(cls) as caught:
        await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(1))

    assert type(caught.value) is cls
    assert caught.value.http_status == status


async def test_token_endpoint_errors_are_mapped_too() -> None:
    fake = FakeYzj(token=lambda request: httpx.Response(503))
    with pytest.raises(VendorUnavailable):
        await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(1))


@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="<html>oops</html>"), httpx.Response(200, json=[0]),
     httpx.Response(200, json={"data": []}), httpx.Response(200, json={"errcode": 0}),
     httpx.Response(200, json={"errcode": 0, "data": {"idx": 0}})],
    ids=["html", "list", "no-errcode", "no-data", "data-object"],
)
async def test_answers_not_in_the_documented_shape_are_unknown(response: httpx.Response) -> None:
    fake = FakeYzj(lambda request: response)
    with pytest.raises(OutcomeUnknown):
        await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(1))


async def test_empty_data_means_every_message_was_refused() -> None:
    fake = FakeYzj(lambda request: {"errcode": 0, "data": []})

    results = await make(fake).send_messages(wxid="w", target_wxid="t", messages=numbered(2))

    assert results == [WecomAccepted(0, "s0", None, False), WecomAccepted(1, "s1", None, False)]


def test_a_token_answer_that_cannot_be_read_means_try_later_not_maybe_sent() -> None:
    """Asking for a token sends no message: its failure must not be 'outcome unknown'."""
    from sender.errors import VendorUnavailable

    def vendor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>gateway</html>")

    async def call() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as http:
            client = YzjClient(http, base_url="https://oapi-yzj.miaokol.com", app_id="a",
                               app_secret="s", clock=lambda: datetime(2026, 11, 24, tzinfo=UTC))
            with pytest.raises(VendorUnavailable):
                await client.send_messages(wxid="w", target_wxid="t", messages=[
                    {"msg_type": "text", "content": {"items": [{"type": "text", "text": "hi"}]},
                     "api_send_id": "msg_1-0"}])

    asyncio.run(call())
