"""The hard cases of sending, end to end: scheduled sends, timeouts after the vendor acted,
transient failures and outages, two workers on one PostgreSQL, status pushes that overtake
the vendor's answer, opt-out by 131050, idempotent refusals, scoped keys, bad input.

The vendor is the simulator, reached over HTTP (ASGI) through `VendorNetwork`, which adds
what a real network does and ASGI does not: the client's read timeout, and a moment between
the vendor acting and its answer reaching us (where callbacks can overtake the answer).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from receiver.app import create_app, itnio_client, yzj_client
from receiver.settings import Settings
from sender import outcomes, sweeps
from sender.service import Sender
from sender.simulator import ITNIO_WA_HOOK, VendorSimulator
from store import db, keys, outbox
from store.models import OutboundMessage, StatusEvent
from tests.conftest import TOKEN, FakeClock
from tests.receiver.sending_support import (
    AUTH,
    BUSINESS,
    CUSTOMER,
    STAFF,
    TEXT,
    WECOM_CUSTOMER,
    customer_writes,
    deliver,
    deliver_due,
    message,
    send,
    sender_of,
    sim_settings,
    simulator,
)
from tests.settling import SettlingClient

WA_CUSTOM = "/wa/custom/sendMsg"
TEMPLATE = {"name": "order_update", "language": "en",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}]}
WECOM_TEXT = [{"msg_type": "text", "content": {"items": [{"type": "text", "text": "hi"}]}}]


class VendorNetwork(httpx.AsyncBaseTransport):
    """The simulator as a real network would carry it. ASGITransport ignores the client's
    timeout; here the read timeout is enforced (the simulator has acted by then: only its
    answer is late). `before_answer[path]` runs once after the vendor handled a call to
    `path` and before its answer (or the timeout) reaches the client."""

    def __init__(self, sim: VendorSimulator) -> None:
        self._inner = httpx.ASGITransport(app=sim.app)
        self.before_answer: dict[str, Callable[[], Awaitable[None]]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        read = (request.extensions.get("timeout") or {}).get("read")
        try:
            response = await asyncio.wait_for(self._inner.handle_async_request(request), read)
        except TimeoutError:
            await self._hook(path)
            raise httpx.ReadTimeout("timed out waiting for the vendor", request=request) from None
        await self._hook(path)
        return response

    async def _hook(self, path: str) -> None:
        hook = self.before_answer.pop(path, None)
        if hook is not None:
            await hook()


@pytest.fixture
def sim(clock: FakeClock) -> VendorSimulator:
    return simulator(clock)


@pytest.fixture
def vendor_timeout() -> float:
    return 10.0


@pytest.fixture
def settings(db_url: str, sim: VendorSimulator, vendor_timeout: float) -> Settings:
    return sim_settings(db_url, vendor_timeout_seconds=vendor_timeout)


@pytest.fixture
def network(sim: VendorSimulator) -> VendorNetwork:
    return VendorNetwork(sim)


@pytest.fixture
def client(settings: Settings, clock: FakeClock, network: VendorNetwork) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, vendor_transport=network)
    with SettlingClient(app) as client:
        yield client


def pushes_now(sim: VendorSimulator, client: TestClient, *,
               reverse: bool = False) -> Callable[[], Awaitable[None]]:
    """A `before_answer` hook: the simulator's callbacks reach replywindow (over ASGI, in
    the app's own loop) before the vendor's answer to our call does."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await client.app({**scope, "state": dict(client.app_state)}, receive, send)

    async def push() -> None:
        batch = list(sim.pending_callbacks)
        sim.pending_callbacks.clear()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://replywindow") as http:
            for callback in batch[::-1] if reverse else batch:
                response = await http.post(f"{callback.url_path}/{TOKEN}", content=callback.body,
                                           headers={"content-type": callback.content_type})
                assert response.status_code == 200, response.text
        await asyncio.to_thread(client.app_state["runtime"].applier.settle)  # and applied

    return push


def _sweep(client: TestClient) -> None:
    """What the scheduler's sweep job does every 30 s."""
    for sweep in (sweeps.recover_stale, sweeps.confirm_wecom, sweeps.expire_old,
                  sweeps.reconcile_sms):
        client.portal.call(sweep, sender_of(client))


def calls_to(sim: VendorSimulator, path: str) -> int:
    return sum(1 for call in sim.calls if call.path == path)


def status_push(vendor_message_id: str, status: str, *, at: int, **extra: Any) -> dict[str, Any]:
    """An ITNIO message-status-event as the vendor pushes it (seed 002; `form` sic)."""
    return {"appId": "simWA001", "channelType": 0, "messageId": vendor_message_id,
            "eventType": "message-status-event", "form": BUSINESS, "recipient": CUSTOMER,
            "status": status, "timestamp": at, **extra}


# -- 1. scheduled sends --------------------------------------------------------------------


@pytest.mark.parametrize(("fallback", "route", "path"), [
    (["template"], "template", "/wa/template/sendMsg"),
    (["sms"], "sms", "/sms/sendSms/batch"),
    (["template", "sms"], "template", "/wa/template/sendMsg"),
])
def test_a_scheduled_send_takes_its_route_when_it_goes_out(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, fallback: list[str],
        route: str, path: str) -> None:
    client.portal.call(sweeps.sync_templates, sender_of(client))
    customer_writes(sim, client, clock)
    send_at = clock.now + timedelta(hours=1)

    response = send(client, template=TEMPLATE, fallback=fallback,
                    send_at=send_at.isoformat().replace("+00:00", "Z"))

    assert response.status_code == 202
    answer = response.json()
    assert (answer["status"], answer["route"]) == ("queued", None)
    assert answer["window"]["open"] is True
    assert answer["send_at"] is not None and answer["vendor_message_id"] is None
    calls_before = len(sim.calls)
    clock.advance(minutes=59)
    assert deliver_due(client) == 0  # not due yet

    clock.advance(hours=25)  # the window has closed since it was asked for
    assert deliver_due(client) == 1

    final = message(client, answer["id"])
    assert (final["route"], final["status"], final["fallback_reason"]) == (
        route, "accepted", "window_closed")
    assert [c.path for c in sim.calls[calls_before:]] == [path]
    assert sim.sent("whatsapp" if route == "template" else "sms")[0]["recipient"] == CUSTOMER
    assert deliver_due(client) == 0


def test_a_scheduled_send_with_no_fallback_is_rejected_when_the_window_has_closed(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    answer = send(client, send_at=(clock.now + timedelta(hours=1)).isoformat()).json()
    assert (answer["status"], answer["route"]) == ("queued", None)

    clock.advance(hours=25)
    assert deliver_due(client) == 1  # claimed, then refused before any call
    final = message(client, answer["id"])

    assert (final["status"], final["failure"]["code"]) == ("rejected", "window_closed")
    assert sim.calls == [] and sim.sent("whatsapp") == []
    clock.advance(hours=1)
    assert deliver_due(client) == 0
    assert sim.calls == []


def test_a_scheduled_send_still_inside_the_window_goes_custom(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    answer = send(client, send_at=(clock.now + timedelta(hours=2)).isoformat()).json()
    assert sim.calls == []

    clock.advance(hours=2)
    assert deliver_due(client) == 1
    assert (message(client, answer["id"])["route"], len(sim.sent("whatsapp"))) == ("custom", 1)


def test_a_send_at_in_the_past_goes_at_once(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)

    answer = send(client, send_at=(clock.now - timedelta(minutes=5)).isoformat()).json()

    assert (answer["route"], answer["status"]) == ("custom", "accepted")
    assert len(sim.sent("whatsapp")) == 1


# -- 2. a timeout after the request was written ---------------------------------------------


@pytest.mark.parametrize("vendor_timeout", [0.2])
def test_a_timed_out_send_is_held_unknown_and_settled_by_the_status_pushes(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.delay_next(WA_CUSTOM, 1.0)

    answer = send(client).json()

    assert (answer["status"], answer["vendor_message_id"]) == ("unknown", None)
    [sent] = sim.sent("whatsapp")  # the vendor has it, though we never heard so
    for _ in range(3):
        clock.advance(minutes=5)
        assert deliver_due(client) == 0
        _sweep(client)
    assert calls_to(sim, WA_CUSTOM) == 1 and len(sim.sent("whatsapp")) == 1
    assert message(client, answer["id"])["status"] == "unknown"

    deliver(sim, client)  # its status pushes, naming an id we never learnt

    final = message(client, answer["id"])
    assert (final["status"], final["vendor_message_id"]) == ("delivered",
                                                             sent["vendor_message_id"])
    assert [e["status"] for e in final["events"]] == ["sent", "delivered"]
    assert calls_to(sim, WA_CUSTOM) == 1


@pytest.mark.parametrize("vendor_timeout", [0.2])
def test_a_timed_out_send_whose_pushes_came_during_the_call_is_settled_by_them(
        client: TestClient, sim: VendorSimulator, clock: FakeClock,
        network: VendorNetwork) -> None:
    """The vendor took it and pushed sent/delivered while our call was still waiting; then
    the call timed out. Those pushes are all we will ever hear: they must settle it."""
    customer_writes(sim, client, clock)
    sim.delay_next(WA_CUSTOM, 1.0)
    network.before_answer[WA_CUSTOM] = pushes_now(sim, client)

    answer = send(client).json()

    [sent] = sim.sent("whatsapp")
    final = message(client, answer["id"])
    assert (final["status"], final["vendor_message_id"]) == ("delivered",
                                                             sent["vendor_message_id"])
    assert [e["status"] for e in final["events"]] == ["sent", "delivered"]
    clock.advance(minutes=5)
    assert deliver_due(client) == 0
    assert calls_to(sim, WA_CUSTOM) == 1


def test_an_unknown_send_that_no_push_settles_expires_after_72_hours(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.malformed_next(WA_CUSTOM)
    answer = send(client).json()
    assert answer["status"] == "unknown"

    clock.advance(hours=72, seconds=1)
    _sweep(client)

    assert message(client, answer["id"])["status"] == "expired"
    assert calls_to(sim, WA_CUSTOM) == 1


def test_a_sender_that_died_mid_call_is_settled_by_the_pushes_that_came_meanwhile(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine) -> None:
    customer_writes(sim, client, clock)
    sim.down = True
    answer = send(client).json()  # queued
    clock.advance(minutes=11)
    with Session(db.writer(engine)) as session, session.begin():  # a worker claims it ...
        claimed = outbox.claim_due(session, now=clock.now, limit=10, lease=timedelta(minutes=2))
        assert len(claimed) == 1
    clock.advance(seconds=1)  # ... the vendor takes it and pushes; the worker dies
    stamp = int(clock.now.timestamp())
    for step, status in enumerate(("sent", "delivered")):
        assert client.post(f"{ITNIO_WA_HOOK}/{TOKEN}", json=status_push(
            "wamid.DIED", status, at=stamp + step)).status_code == 200
    assert message(client, answer["id"])["status"] == "sending"

    clock.advance(minutes=3)
    assert client.portal.call(sweeps.recover_stale, sender_of(client)) == 1

    final = message(client, answer["id"])
    assert (final["status"], final["vendor_message_id"]) == ("delivered", "wamid.DIED")
    assert deliver_due(client) == 0


# -- 3. transient failures, outages, business errors ---------------------------------------


@pytest.mark.parametrize("http_status", [429, 502, 503, 504])
def test_a_transient_vendor_error_is_retried_once_after_the_backoff(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, http_status: int) -> None:
    customer_writes(sim, client, clock)
    sim.fail_next(WA_CUSTOM, http_status=http_status)

    answer = send(client).json()

    assert (answer["status"], answer["vendor_message_id"]) == ("queued", None)
    assert sim.sent("whatsapp") == []
    assert deliver_due(client) == 0  # not before the backoff
    clock.advance(seconds=3)  # the first backoff is 1-2 s
    assert deliver_due(client) == 1

    final = message(client, answer["id"])
    assert final["status"] == "accepted"
    [sent] = sim.sent("whatsapp")
    assert final["vendor_message_id"] == sent["vendor_message_id"]
    clock.advance(minutes=30)
    assert deliver_due(client) == 0
    assert calls_to(sim, WA_CUSTOM) == 2 and len(sim.sent("whatsapp")) == 1


@pytest.mark.parametrize(("channel", "path"), [
    ("whatsapp", WA_CUSTOM), ("sms", "/sms/sendSms/batch"), ("wecom", "/wechat/sendMessage")])
def test_an_outage_over_several_rounds_ends_in_exactly_one_send(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, channel: str,
        path: str) -> None:
    customer_writes(sim, client, clock)
    sim.down = True
    body: dict[str, Any] = {"channel": channel}
    if channel == "sms":
        body |= {"sms_text": "hello", "message": None}
    elif channel == "wecom":
        body |= {"from": STAFF, "to": WECOM_CUSTOMER, "message": WECOM_TEXT}
    answer = send(client, **body).json()
    assert answer["status"] == "queued"

    for _ in range(5):
        clock.advance(minutes=11)  # past the longest backoff (10 min)
        assert deliver_due(client) == 1
        assert message(client, answer["id"])["status"] == "queued"
    sim.down = False
    clock.advance(minutes=11)
    assert deliver_due(client) == 1
    clock.advance(minutes=11)
    assert deliver_due(client) == 0

    assert message(client, answer["id"])["status"] == "accepted"
    assert len(sim.sent(channel)) == 1
    # WeCom asks for its token first: while the vendor is down, that is the call that fails.
    assert calls_to(sim, path) == (1 if channel == "wecom" else 7)


def test_a_malformed_answer_is_held_unknown_and_never_resent(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.malformed_next(WA_CUSTOM)

    answer = send(client).json()

    assert answer["status"] == "unknown"
    for _ in range(3):
        clock.advance(minutes=11)
        assert deliver_due(client) == 0
        _sweep(client)
    assert calls_to(sim, WA_CUSTOM) == 1
    assert message(client, answer["id"])["status"] == "unknown"


def test_a_business_error_is_rejected_and_never_retried(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.fail_next(WA_CUSTOM, status="-68")

    answer = send(client).json()

    assert (answer["status"], answer["failure"]["code"]) == ("rejected", "-68")
    for _ in range(3):
        clock.advance(minutes=11)
        assert deliver_due(client) == 0
        _sweep(client)
    assert calls_to(sim, WA_CUSTOM) == 1 and sim.sent("whatsapp") == []
    assert message(client, answer["id"])["status"] == "rejected"


@pytest.mark.parametrize(("fallback", "status", "route"), [
    (["sms"], "accepted", "sms"), ([], "rejected", "custom")])
def test_a_retry_after_the_window_closed_takes_the_fallback_or_is_refused(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, fallback: list[str],
        status: str, route: str) -> None:
    customer_writes(sim, client, clock)
    sim.fail_next(WA_CUSTOM, http_status=503)
    answer = send(client, fallback=fallback).json()
    assert (answer["route"], answer["status"]) == ("custom", "queued")

    clock.advance(hours=25)
    assert deliver_due(client) == 1

    final = message(client, answer["id"])
    assert (final["status"], final["route"]) == (status, route)
    assert sim.sent("whatsapp") == []
    assert calls_to(sim, WA_CUSTOM) == 1  # no call spent on a window known to be closed
    assert len(sim.sent("sms")) == (1 if fallback else 0)
    if status == "rejected":
        assert final["failure"]["code"] == "window_closed"


# -- 4. two workers on one PostgreSQL -------------------------------------------------------


@pytest.mark.postgres
def test_two_workers_send_every_message_exactly_once(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, settings: Settings,
        engine: Engine) -> None:
    if db.is_sqlite(settings.database_url):
        pytest.skip("FOR UPDATE SKIP LOCKED across workers is PostgreSQL's")
    customer_writes(sim, client, clock)
    sim.down = True
    ids = [send(client, message={"type": "text", "text": {"body": f"reply {i}"}}).json()["id"]
           for i in range(50)]
    sim.down = False
    clock.advance(seconds=5)

    async def two_workers() -> tuple[int, int]:
        engines = [db.make_engine(settings.database_url) for _ in range(2)]
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as ha, \
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as hb:
                a, b = (Sender(engine, itnio=itnio_client(settings, http, clock),
                               yzj=yzj_client(settings, http, clock),
                               config=settings.send_config(), clock=clock)
                        for engine, http in zip(engines, (ha, hb), strict=True))

                async def drain(worker: Sender) -> int:
                    done = 0
                    while claimed := await worker.deliver_due(limit=5):
                        done += claimed
                    return done

                first, second = await asyncio.gather(drain(a), drain(b))
                return first, second
        finally:
            for engine in engines:
                engine.dispose()

    first, second = client.portal.call(two_workers)

    assert first + second == 50
    assert first > 0 and second > 0
    texts = [s["text"] for s in sim.sent("whatsapp")]
    assert sorted(texts) == sorted(f"reply {i}" for i in range(50))  # each exactly once
    with Session(engine) as session:
        rows = session.exec(select(OutboundMessage).where(col(OutboundMessage.id).in_(ids))).all()
    assert {r.status for r in rows} == {"accepted"}
    assert len({r.vendor_message_id for r in rows}) == 50


# -- 5. status pushes that overtake the vendor's answer ------------------------------------


def test_an_orphan_status_push_is_applied_once_its_message_names_the_id(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine,
        settings: Settings) -> None:
    stamp = int(clock.now.timestamp())
    response = client.post(f"{ITNIO_WA_HOOK}/{TOKEN}",
                           json=status_push("wamid.EARLY", "delivered", at=stamp + 1))
    assert response.status_code == 200
    with Session(engine) as session:
        [orphan] = session.exec(select(StatusEvent).where(
            StatusEvent.vendor_message_id == "wamid.EARLY")).all()
        assert orphan.message_id is None

    customer_writes(sim, client, clock)
    sim.down = True  # so it stays queued: the id it will have comes from us below
    answer = send(client).json()
    with Session(db.writer(engine)) as session, session.begin():
        row = outbox.get(session, answer["id"], for_update=True)
        assert row is not None
        row.vendor_message_id = "wamid.EARLY"
        outcomes.record_status(session, row, status="accepted", at=clock.now,
                               config=sender_of(client).config)
        applied = outcomes.attach_orphans(session, row, config=settings.send_config(),
                                          now=clock.now)
    assert applied == 1

    final = message(client, answer["id"])
    assert final["status"] == "delivered"
    assert [e["status"] for e in final["events"]] == ["delivered"]
    with Session(engine) as session:
        linked = session.get(StatusEvent, orphan.id)
        assert linked is not None and linked.message_id == answer["id"]


def test_status_pushes_that_arrive_before_the_send_answer_are_applied(
        client: TestClient, sim: VendorSimulator, clock: FakeClock,
        network: VendorNetwork) -> None:
    customer_writes(sim, client, clock)
    sim.set_outcome(CUSTOMER, "read")
    network.before_answer[WA_CUSTOM] = pushes_now(sim, client)

    answer = send(client).json()

    assert (answer["status"], answer["vendor_message_id"]) == (
        "read", sim.sent("whatsapp")[0]["vendor_message_id"])
    assert [e["status"] for e in message(client, answer["id"])["events"]] == [
        "sent", "delivered", "read"]


def test_a_131047_failure_before_the_send_answer_still_resends_by_the_fallback(
        client: TestClient, sim: VendorSimulator, clock: FakeClock,
        network: VendorNetwork) -> None:
    customer_writes(sim, client, clock)
    sim.set_outcome(CUSTOMER, "failed:131047")
    network.before_answer[WA_CUSTOM] = pushes_now(sim, client)

    answer = send(client, fallback=["sms"]).json()

    assert (answer["status"], answer["failure"]["code"]) == ("failed", "131047")
    assert deliver_due(client) == 1
    assert [s["content"] for s in sim.sent("sms")] == ["Your order has shipped"]


def test_a_wecom_send_failure_that_arrives_before_the_send_answer_ends_failed(
        client: TestClient, sim: VendorSimulator, clock: FakeClock,
        network: VendorNetwork) -> None:
    sim.set_outcome(WECOM_CUSTOMER, "failed:客户已删除")
    network.before_answer["/wechat/sendMessage"] = pushes_now(sim, client, reverse=True)

    response = client.post("/v1/messages", headers=AUTH, json={
        "channel": "wecom", "from": STAFF, "to": WECOM_CUSTOMER, "message": WECOM_TEXT})

    answer = response.json()
    assert (answer["status"], answer["failure"]["reason"]) == ("failed", "客户已删除")
    clock.advance(seconds=601)
    client.portal.call(sweeps.confirm_wecom, sender_of(client))
    assert message(client, answer["id"])["status"] == "failed"


def test_a_push_stored_as_an_orphan_while_the_answer_was_recorded_is_applied_by_the_sweep(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine) -> None:
    """On PostgreSQL the push's transaction and the one recording the vendor's answer can
    run at once: neither sees the other's row, so the push stays an orphan of a message that
    now has its id. (Built here in that state; the sweep must mend it.)"""
    customer_writes(sim, client, clock)
    sim.down = True
    answer = send(client).json()
    assert client.post(f"{ITNIO_WA_HOOK}/{TOKEN}", json=status_push(
        "wamid.RACE", "delivered", at=int(clock.now.timestamp()) + 1)).status_code == 200
    with Session(db.writer(engine)) as session, session.begin():  # the answer, recorded
        row = outbox.get(session, answer["id"], for_update=True)
        assert row is not None
        row.vendor_message_id = "wamid.RACE"
        outcomes.record_status(session, row, status="accepted", at=clock.now,
                               config=sender_of(client).config)
    assert message(client, answer["id"])["status"] == "accepted"

    clock.advance(seconds=30)
    client.portal.call(sweeps.attach_stranded, sender_of(client))

    final = message(client, answer["id"])
    assert final["status"] == "delivered"
    assert [e["status"] for e in final["events"]] == ["delivered"]


# -- 6. opt-out by 131050 ------------------------------------------------------------------


def test_a_131050_failure_opts_the_contact_out_until_they_write_start(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.set_outcome(CUSTOMER, "failed:131050")
    answer = send(client).json()
    deliver(sim, client)
    assert message(client, answer["id"])["failure"]["code"] == "131050"
    sim.set_outcome(CUSTOMER, "delivered")
    sms = {"channel": "sms", "from": BUSINESS, "to": CUSTOMER, "sms_text": "promo"}

    refused = client.post("/v1/messages", headers=AUTH, json=sms)

    assert (refused.status_code, refused.json()["error"]) == (409, "opted_out")
    assert sim.sent("sms") == []

    clock.advance(minutes=1)
    sim.customer_writes_sms(BUSINESS, CUSTOMER, "START")
    deliver(sim, client)
    clock.advance(minutes=1)
    again = client.post("/v1/messages", headers=AUTH, json=sms)
    assert (again.status_code, again.json()["status"]) == (202, "accepted")
    assert len(sim.sent("sms")) == 1


# -- 7. idempotent refusals ----------------------------------------------------------------


def test_the_idempotency_key_of_a_refused_request_returns_the_same_refusal(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine) -> None:
    headers = AUTH | {"Idempotency-Key": "refused-1"}

    first = send(client, headers=headers)
    clock.advance(minutes=1)
    again = send(client, headers=headers)

    assert first.status_code == again.status_code == 409
    assert first.json()["error"] == "window_closed"
    assert again.json() == first.json()
    assert sim.calls == []
    with Session(engine) as session:
        assert len(session.exec(select(OutboundMessage)).all()) == 1
    other = send(client, headers=headers, fallback=["sms"])
    assert (other.status_code, other.json()["error"]) == (409, "idempotency_conflict")
    assert sim.calls == []


def test_the_same_idempotency_key_sent_concurrently_sends_once_and_never_500s(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    headers = AUTH | {"Idempotency-Key": "race-1"}

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: send(client, headers=headers), range(8)))

    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(sim.sent("whatsapp")) == 1


# -- 8. keys scoped to other accounts ------------------------------------------------------


def test_a_key_scoped_to_another_account_can_neither_send_nor_see(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine) -> None:
    customer_writes(sim, client, clock)
    mine = send(client).json()
    with Session(db.writer(engine)) as session, session.begin():
        _, other_key = keys.create(session, name="other", accounts=["91800000000"],
                                   now=clock.now)
    other = {"Authorization": f"Bearer {other_key}"}
    calls = len(sim.calls)

    forbidden = send(client, headers=other)
    hidden = client.get(f"/v1/messages/{mine['id']}", headers=other)
    listed = client.get("/v1/messages", headers=other)

    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "forbidden")
    assert hidden.status_code == 404
    assert listed.status_code == 200 and listed.json()["messages"] == []
    assert len(sim.calls) == calls


# -- 9. bad input --------------------------------------------------------------------------


def _post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/messages", content=content,
                       headers={"content-type": "application/json",
                                **(AUTH if headers is None else headers)})


VALID = {"channel": "whatsapp", "from": BUSINESS, "to": CUSTOMER, "message": TEXT}


@pytest.mark.parametrize(("body", "status", "error", "field"), [
    (b"{not json", 400, "invalid_json", None),
    (VALID | {"channel": "fax"}, 422, None, "channel"),
    (VALID | {"fallback": ["email"]}, 422, None, "fallback"),
    (VALID | {"fallback": "sms"}, 422, None, "fallback"),
    (VALID | {"send_at": "tomorrow"}, 422, None, "send_at"),
    (VALID | {"send_at": "2026-11-25T10:00:00"}, 422, None, "send_at"),  # no zone
    (VALID | {"send_at": "2026-11-25"}, 422, None, "send_at"),
    ({"channel": "wecom", "from": STAFF, "to": WECOM_CUSTOMER, "message": []}, 422, None,
     "message"),
    ([VALID], 422, None, None),
    (VALID | {"sms_text": 5}, 422, None, "sms_text"),
])
def test_bad_input_is_refused_naming_what_is_wrong(
        client: TestClient, sim: VendorSimulator, body: Any, status: int, error: str | None,
        field: str | None) -> None:
    response = _post(client, body)

    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["detail"]
    if error is not None:
        assert answer["error"] == error
    if field is not None:
        assert answer["field"] == field
    assert sim.calls == []


def test_an_sms_over_1024_characters_is_422_with_the_vendor_code(
        client: TestClient, sim: VendorSimulator) -> None:
    response = _post(client, {"channel": "sms", "from": BUSINESS, "to": CUSTOMER,
                              "sms_text": "x" * 1025})

    assert response.status_code == 422
    assert response.json()["vendor_code"] == "-5"
    assert sim.calls == []


def test_a_body_over_1_mib_is_413_and_no_key_is_401(
        client: TestClient, sim: VendorSimulator) -> None:
    huge = json.dumps(VALID | {"sms_text": "x" * (1024 * 1024)}).encode()

    assert _post(client, huge).status_code == 413
    assert _post(client, VALID, headers={}).status_code == 401
    assert _post(client, VALID, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert sim.calls == []


def test_a_text_too_long_for_the_sms_fallback_is_422_before_any_call(
        client: TestClient, sim: VendorSimulator) -> None:
    long_text = {"type": "text", "text": {"body": "x" * 2000}}  # fine for WhatsApp (4096)
    response = send(client, message=long_text, fallback=["sms"])

    assert response.status_code == 422
    assert (response.json()["field"], response.json()["vendor_code"]) == ("sms_text", "-5")
    assert sim.calls == []


def test_two_pushes_for_a_message_held_as_unknown_in_one_body_settle_it_once(
        client: TestClient, engine: Engine, clock: FakeClock) -> None:
    """The first push teaches the message its id; the second, in the same transaction,
    must find it by that id (not adopt another message or be left an orphan)."""
    from store.models import OutboundMessage as Outbound

    with Session(db.writer(engine)) as session, session.begin():
        session.add(Outbound(id="msg_u1", channel="whatsapp", account=BUSINESS,
                             recipient=CUSTOMER, route="custom", status="unknown",
                             created_at=clock.now, status_at=clock.now))
    at = int(clock.now.timestamp()) + 1
    body = [status_push("wamid.U1", "sent", at=at), status_push("wamid.U1", "delivered", at=at)]
    assert client.post(f"{ITNIO_WA_HOOK}/{TOKEN}", json=body).status_code == 200

    final = message(client, "msg_u1")
    assert (final["status"], final["vendor_message_id"]) == ("delivered", "wamid.U1")
    assert [e["status"] for e in final["events"]] == ["sent", "delivered"]
