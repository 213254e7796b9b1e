"""Bots send: POST /v1/messages through the route policy to the vendor simulator (over HTTP,
by ASGI), and every message followed to its outcome by the simulator's own callbacks."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.settings import Settings
from sender import sweeps
from sender.simulator import VendorSimulator
from store.models import OutboundMessage
from tests.conftest import FakeClock
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


@pytest.fixture
def sim(clock: FakeClock) -> VendorSimulator:
    return simulator(clock)


@pytest.fixture
def settings(db_url: str, sim: VendorSimulator) -> Settings:
    return sim_settings(db_url)


@pytest.fixture
def client(settings: Settings, clock: FakeClock, sim: VendorSimulator) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, vendor_transport=httpx.ASGITransport(app=sim.app))
    with SettlingClient(app) as client:
        yield client


# -- WhatsApp ------------------------------------------------------------------------------


def test_inside_the_window_a_reply_goes_custom_and_reaches_read(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.set_outcome(CUSTOMER, "read")

    response = send(client, reply_to="wamid.1")

    assert response.status_code == 202
    answer = response.json()
    assert (answer["route"], answer["status"]) == ("custom", "accepted")
    assert answer["window"]["open"] is True and answer["fallback_reason"] is None
    [sent] = sim.sent("whatsapp")
    assert (sent["route"], sent["recipient"], sent["text"]) == ("custom", CUSTOMER,
                                                                "Your order has shipped")
    assert sent["vendor_message_id"] == answer["vendor_message_id"]

    deliver(sim, client)
    final = message(client, answer["id"])
    assert final["status"] == "read"
    assert set(final["times"]) >= {"accepted", "sent", "delivered", "read"}
    assert [e["status"] for e in final["events"]] == ["sent", "delivered", "read"]


def test_outside_the_window_the_reply_goes_as_the_template(
        client: TestClient, sim: VendorSimulator) -> None:
    client.portal.call(sweeps.sync_templates, sender_of(client))  # learn it is APPROVED
    template = {"name": "order_update", "language": "en",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}]}

    answer = send(client, template=template, fallback=["template", "sms"]).json()

    assert (answer["route"], answer["status"], answer["fallback_reason"]) == (
        "template", "accepted", "window_closed")
    assert sim.sent("whatsapp")[0]["template"] == {"name": "order_update", "language": "en"}


def test_outside_the_window_with_no_template_it_goes_by_sms(
        client: TestClient, sim: VendorSimulator) -> None:
    answer = send(client, fallback=["template", "sms"]).json()

    assert (answer["route"], answer["status"]) == ("sms", "accepted")
    [sent] = sim.sent("sms")
    assert (sent["content"], sent["order_id"]) == ("Your order has shipped", answer["id"])
    deliver(sim, client)
    assert message(client, answer["id"])["status"] == "delivered"


def test_outside_the_window_with_no_fallback_it_is_refused(
        client: TestClient, sim: VendorSimulator) -> None:
    response = send(client)

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "window_closed"
    assert body["window"]["open"] is False
    assert sim.calls == []


def test_the_idempotency_key_returns_the_first_answer_and_sends_nothing_again(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    headers = AUTH | {"Idempotency-Key": "order-A-1"}
    body = {"channel": "whatsapp", "from": BUSINESS, "to": CUSTOMER, "message": TEXT}

    first = client.post("/v1/messages", json=body, headers=headers)
    again = client.post("/v1/messages", json=body, headers=headers)
    other = client.post("/v1/messages", json=body | {"sms_text": "x"}, headers=headers)

    assert again.status_code == first.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert len(sim.sent("whatsapp")) == 1
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"


def test_a_custom_message_refused_with_131047_is_resent_by_the_fallback(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.set_outcome(CUSTOMER, "failed:131047")

    answer = send(client, fallback=["sms"]).json()
    deliver(sim, client)  # the failure push for the custom message

    first = message(client, answer["id"])
    assert (first["status"], first["failure"]["code"]) == ("failed", "131047")
    resends = client.get("/v1/messages?channel=whatsapp", headers=AUTH).json()["messages"]
    [resend] = [m for m in resends if m["fallback_of"] == answer["id"]]
    assert (resend["route"], resend["fallback_reason"]) == ("sms", "window_closed")
    assert deliver_due(client) == 1
    assert [s["content"] for s in sim.sent("sms")] == ["Your order has shipped"]


def test_a_vendor_refusal_is_rejected_with_its_code_and_meaning(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.fail_next("/wa/custom/sendMsg", status="-68")

    answer = send(client).json()

    assert answer["status"] == "rejected"
    assert answer["failure"] == {"code": "-68", "reason": answer["failure"]["reason"]}
    assert "balance" in answer["failure"]["reason"].lower()


def test_a_vendor_outage_is_retried_later_and_nothing_is_lost(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine) -> None:
    customer_writes(sim, client, clock)
    sim.fail_next("/wa/custom/sendMsg", http_status=503, times=1)

    answer = send(client).json()
    assert answer["status"] == "queued"

    clock.advance(seconds=5)
    assert deliver_due(client) == 1
    assert message(client, answer["id"])["status"] == "accepted"
    assert len(sim.sent("whatsapp")) == 1


def test_invalid_messages_are_422_naming_the_field(client: TestClient,
                                                    sim: VendorSimulator) -> None:
    response = send(client, to="123")
    assert response.status_code == 422
    assert (response.json()["field"], response.json()["vendor_code"]) == ("to", "-71")
    too_long = send(client, message={"type": "text", "text": {"body": "x" * 4097}})
    assert too_long.status_code == 422
    assert too_long.json()["field"] == "message.text.body"
    assert sim.calls == []


# -- WeCom and SMS -------------------------------------------------------------------------


def test_wecom_send_is_sent_on_the_echo_and_delivered_after_the_confirm_delay(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    parts = [{"msg_type": "text", "content": {"items": [{"type": "text", "text": f"part {i}"}]}}
             for i in range(7)]
    response = client.post("/v1/messages", headers=AUTH, json={
        "channel": "wecom", "from": STAFF, "to": WECOM_CUSTOMER, "message": parts})

    answer = response.json()
    assert (answer["route"], answer["status"]) == ("custom", "accepted")
    assert len(sim.sent("wecom")) == 7
    assert [c.path for c in sim.calls].count("/wechat/sendMessage") == 2  # calls of at most 5
    # spread at the default 20 a minute: now, then every 3 s
    start = int(clock.now.timestamp())
    assert [m["delayed_time"] for m in sim.sent("wecom")] == [0] + [start + 3 * i
                                                                    for i in range(1, 7)]

    deliver(sim, client)
    assert message(client, answer["id"])["status"] == "sent"
    clock.advance(seconds=601)
    client.portal.call(sweeps.confirm_wecom, sender_of(client))
    assert message(client, answer["id"])["status"] == "delivered"


def test_a_wecom_failure_ends_failed_even_before_the_echo(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    sim.set_outcome(WECOM_CUSTOMER, "failed:客户已删除")
    answer = client.post("/v1/messages", headers=AUTH, json={
        "channel": "wecom", "from": STAFF, "to": WECOM_CUSTOMER,
        "message": [{"msg_type": "text", "content": {"items": [{"type": "text", "text": "hi"}]}}],
    }).json()

    batch = list(sim.pending_callbacks)
    sim.pending_callbacks[:] = batch[::-1]  # the failure first, then the echo
    deliver(sim, client)

    final = message(client, answer["id"])
    assert (final["status"], final["failure"]["reason"]) == ("failed", "客户已删除")
    clock.advance(seconds=601)
    client.portal.call(sweeps.confirm_wecom, sender_of(client))
    assert message(client, answer["id"])["status"] == "failed"


def test_sms_channel_send_and_its_delivery_report(client: TestClient, sim: VendorSimulator) -> None:
    answer = client.post("/v1/messages", headers=AUTH, json={
        "channel": "sms", "from": BUSINESS, "to": CUSTOMER, "sms_text": "Your code is 1234",
    }).json()

    assert (answer["route"], answer["status"]) == ("sms", "accepted")
    deliver(sim, client)
    assert message(client, answer["id"])["status"] == "delivered"


def test_sms_without_a_report_is_reconciled_through_get_report(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    sim.set_outcome(CUSTOMER, "silent")
    answer = client.post("/v1/messages", headers=AUTH, json={
        "channel": "sms", "from": BUSINESS, "to": CUSTOMER, "sms_text": "hello"}).json()
    assert sim.pending_callbacks == []

    clock.advance(minutes=11)
    assert client.portal.call(sweeps.reconcile_sms, sender_of(client)) == 1
    assert message(client, answer["id"])["status"] == "delivered"


def test_an_stop_word_opts_the_contact_out_of_sms(client: TestClient, sim: VendorSimulator) -> None:
    sim.customer_writes_sms(BUSINESS, CUSTOMER, "STOP")
    deliver(sim, client)

    response = client.post("/v1/messages", headers=AUTH, json={
        "channel": "sms", "from": BUSINESS, "to": CUSTOMER, "sms_text": "promo"})
    assert response.status_code == 409
    assert response.json()["error"] == "opted_out"


def test_anything_without_an_outcome_after_72_hours_expires(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine) -> None:
    sim.set_outcome(CUSTOMER, "silent")
    customer_writes(sim, client, clock)
    answer = send(client).json()
    clock.advance(hours=72, seconds=1)

    assert client.portal.call(sweeps.expire_old, sender_of(client)) == 1
    assert message(client, answer["id"])["status"] == "expired"
    with Session(engine) as session:
        assert session.exec(select(OutboundMessage)).one().expired_at == clock.now


def test_templates_are_synced_and_listed(client: TestClient, sim: VendorSimulator) -> None:
    assert client.portal.call(sweeps.sync_templates, sender_of(client)) >= 1

    templates = client.get("/v1/templates", headers=AUTH).json()["templates"]
    assert {(t["name"], t["language"], t["status"]) for t in templates} >= {
        ("order_update", "en", "APPROVED")}


def test_messages_are_paged_newest_first(client: TestClient, sim: VendorSimulator,
                                         clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    ids = []
    for _ in range(3):
        ids.append(send(client).json()["id"])
        clock.advance(seconds=1)

    page = client.get("/v1/messages?channel=whatsapp&to=" + CUSTOMER, headers=AUTH).json()
    assert [m["id"] for m in page["messages"]] == ids[::-1]
    assert page["next_cursor"] is None


def test_vendor_metrics_name_each_call_s_vendor_when_both_share_a_host(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    """Both vendors' base URLs are the simulator's here, as in the demo: the vendor is the one
    whose client made the call, not a guess from the host."""
    customer_writes(sim, client, clock)
    assert send(client).status_code == 202
    assert client.post("/v1/messages", headers=AUTH, json={
        "channel": "wecom", "from": STAFF, "to": WECOM_CUSTOMER,
        "message": [{"msg_type": "text", "content": {"items": [{"type": "text", "text": "hi"}]}}],
    }).status_code == 202

    lines = client.get("/metrics", headers=AUTH).text.splitlines()
    counts = {line.split(" ")[0] for line in lines
              if line.startswith("replywindow_vendor_request_duration_seconds_count")}

    assert counts == {
        'replywindow_vendor_request_duration_seconds_count{endpoint="/oauth/token",'
        'status_class="2xx",vendor="yzj"}',
        'replywindow_vendor_request_duration_seconds_count{endpoint="/wa/custom/sendMsg",'
        'status_class="2xx",vendor="itnio"}',
        'replywindow_vendor_request_duration_seconds_count{endpoint="/wechat/sendMessage",'
        'status_class="2xx",vendor="yzj"}',
    }
