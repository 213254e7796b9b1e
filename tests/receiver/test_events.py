"""Bots hear every event: the feed's cursor (no gap, no repeat, also across replicas), the
long-poll, and the signed push with its retries, order and dead letters."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.settings import Settings
from sender import sweeps
from sender.events import emit
from sender.push import RETRY_SCHEDULE, new_secret
from store.db import make_engine, writer
from store.models import Event
from tests.conftest import API_KEY, DATA, TOKEN, FakeClock
from tests.settling import SettlingClient

WA = f"/webhooks/itnio/whatsapp/{TOKEN}"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SECRET = new_secret()


def uplink(message_id: str, customer: str = "91856321432", **extra: Any) -> dict[str, Any]:
    body = json.loads((DATA / "webhooks" / "itnio_wa_uplink_text.json").read_text())
    return body | {"messageId": message_id, "from": {"phone": customer, "name": "C"}} | extra


def feed(client: TestClient, after: str = "", **params: Any) -> dict[str, Any]:
    response = client.get("/v1/events", params={"after": after, **params}, headers=AUTH)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- the feed -------------------------------------------------------------------------------


def test_an_inbound_message_is_in_the_feed_with_its_content(client: TestClient) -> None:
    client.post(WA, json=uplink("m1"))

    [event] = feed(client, wait=5)["events"]
    assert event["type"] == "message.inbound"
    assert event["data"]["customer"] == "91856321432"
    assert event["data"]["text"] == "hi, is my order shipped?"
    assert event["data"]["content"] == {"type": "text",
                                        "text": {"body": "hi, is my order shipped?"}}


def test_paging_by_cursor_never_skips_or_repeats(client: TestClient) -> None:
    for n in range(7):
        client.post(WA, json=uplink(f"m{n}"))
    client.post(WA, json=uplink("m3"))  # a repeat: applied once, so one event

    seen, cursor = [], ""
    while True:
        page = feed(client, cursor, limit=2, wait=0 if len(seen) == 7 else 5)
        if not page["events"]:
            break
        seen += [e["data"]["message_id"] for e in page["events"]]
        cursor = page["next_cursor"]

    assert seen == [f"m{n}" for n in range(7)]
    assert feed(client, cursor)["next_cursor"] == cursor


def test_a_bad_cursor_is_422(client: TestClient) -> None:
    response = client.get("/v1/events?after=abc", headers=AUTH)
    assert (response.status_code, response.json()["field"]) == (422, "after")


def test_long_poll_answers_as_soon_as_an_event_arrives(client: TestClient) -> None:
    cursor = feed(client)["next_cursor"]
    answer: dict[str, Any] = {}

    def poll() -> None:
        answer.update(feed(client, cursor, wait=30))

    poller = threading.Thread(target=poll)
    poller.start()
    client.post(WA, json=uplink("m-late"))
    poller.join(timeout=30)

    assert not poller.is_alive()
    assert [e["data"]["message_id"] for e in answer["events"]] == ["m-late"]


def test_a_long_poll_with_nothing_new_answers_empty_with_the_same_cursor(
        client: TestClient) -> None:
    page = feed(client, "", wait=1)
    assert page == {"events": [], "next_cursor": "0.0"}


def test_a_scoped_key_hears_only_its_accounts(client: TestClient, engine: Engine) -> None:
    from store import keys

    with Session(writer(engine)) as session, session.begin():
        _, key = keys.create(session, name="other", accounts=["91800000000"],
                             now=datetime(2026, 1, 1, tzinfo=UTC))
    client.post(WA, json=uplink("m1"))
    client.post(WA, json=uplink("m2", businessPhone="91800000000"))

    response = client.get("/v1/events?wait=5", headers={"Authorization": f"Bearer {key}"})
    assert [e["data"]["message_id"] for e in response.json()["events"]] == ["m2"]


@pytest.mark.postgres
def test_two_replicas_committing_out_of_id_order_never_make_the_cursor_skip(
        db_url: str, client: TestClient) -> None:
    """Transaction A takes an id and stays open; B takes a higher id and commits. A reader
    must not move past A's event before A commits, or it would never see it."""
    if not db_url.startswith("postgresql"):
        pytest.skip("ids and commit order only diverge on PostgreSQL")
    engine = make_engine(db_url)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    slow = Session(engine)
    slow.begin()
    emit(slow, "message.inbound", channel="whatsapp", account="91856321412", customer="1",
         data={"message_id": "A"}, now=now, push=False)
    slow.flush()
    with Session(engine) as fast, fast.begin():
        emit(fast, "message.inbound", channel="whatsapp", account="91856321412", customer="2",
             data={"message_id": "B"}, now=now, push=False)
    ids = dict(slow.execute(text("SELECT data->>'message_id', id FROM events")).all())
    assert ids["A"] < ids["B"]  # A took the lower id

    first = feed(client)
    assert first["events"] == []  # B is held back while A's transaction is open
    slow.commit()
    slow.close()
    second = feed(client, first["next_cursor"], wait=5)
    assert [e["data"]["message_id"] for e in second["events"]] == ["A", "B"]
    engine.dispose()


# -- window.expiring ------------------------------------------------------------------------


def test_window_expiring_is_announced_once_for_an_unanswered_window(
        client: TestClient, clock: FakeClock) -> None:
    client.post(WA, json=uplink("m1", timestamp=int(clock.now.timestamp())))
    sender = client.app_state["runtime"].sender
    assert client.portal.call(sweeps.announce_expiring, sender) == 0  # 24 h left

    clock.advance(hours=23, minutes=30)
    assert client.portal.call(sweeps.announce_expiring, sender) == 1
    assert client.portal.call(sweeps.announce_expiring, sender) == 0  # once

    [event] = [e for e in feed(client, wait=5)["events"] if e["type"] == "window.expiring"]
    assert event["data"]["customer"] == "91856321432"
    assert 0 < event["data"]["seconds_left"] <= 3600


# -- the push -------------------------------------------------------------------------------


class Bot:
    """A bot's webhook endpoint that fails the first `failures` calls, then takes them."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        if self.failures > 0:
            self.failures -= 1
            return httpx.Response(503)
        return httpx.Response(204)


@pytest.fixture
def bot() -> Bot:
    return Bot()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, webhook_token=TOKEN, api_keys=API_KEY,
                    run_scheduler=False, bot_webhook_url="https://bot.example/hooks",
                    bot_webhook_secret=SECRET, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def client(settings: Settings, clock: FakeClock, bot: Bot) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, bot_transport=httpx.MockTransport(bot))
    with SettlingClient(app) as client:
        yield client


def push(client: TestClient) -> int:
    return int(client.portal.call(client.app_state["runtime"].pusher.push_due))


def test_pushes_are_signed_so_a_standard_webhooks_verifier_accepts_them(
        client: TestClient, bot: Bot, clock: FakeClock) -> None:
    clock.now = datetime.now(UTC)  # the verifier checks the timestamp against real time
    client.post(WA, json=uplink("m1"))
    assert push(client) == 1

    [request] = bot.received
    payload = Webhook(SECRET).verify(request.content.decode(), dict(request.headers))

    assert payload["type"] == "message.inbound"
    assert payload["id"] == request.headers["webhook-id"]
    assert payload["data"]["message_id"] == "m1"


def test_a_tampered_push_fails_verification(client: TestClient, bot: Bot,
                                            clock: FakeClock) -> None:
    clock.now = datetime.now(UTC)
    client.post(WA, json=uplink("m1"))
    push(client)

    [request] = bot.received
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.content.decode().replace("m1", "m2"),
                               dict(request.headers))


def test_a_bot_that_fails_then_recovers_gets_every_event_in_order(
        client: TestClient, bot: Bot, clock: FakeClock, engine: Engine) -> None:
    bot.failures = 3
    for n in range(3):
        client.post(WA, json=uplink(f"m{n}"))

    for _ in range(3):  # each failure pushes the retry later; nothing else overtakes it
        assert push(client) == 1
        clock.advance(seconds=RETRY_SCHEDULE[-1].total_seconds())
    while push(client):
        clock.advance(seconds=1)

    delivered = [json.loads(r.content)["data"]["message_id"] for r in bot.received[3:]]
    assert delivered == ["m0", "m1", "m2"]
    with Session(engine) as session:
        states = {e.push_state for e in session.exec(select(Event))}
    assert states == {"delivered"}


def test_different_conversations_do_not_wait_for_each_other(
        client: TestClient, bot: Bot) -> None:
    client.post(WA, json=uplink("a1", customer="91800000001"))
    client.post(WA, json=uplink("b1", customer="91800000002"))
    client.post(WA, json=uplink("a2", customer="91800000001"))

    assert push(client) == 2  # the head of each conversation
    assert push(client) == 1  # then a2


def test_a_bot_down_for_more_than_a_day_gets_the_event_dead_lettered_then_revived(
        client: TestClient, bot: Bot, clock: FakeClock, engine: Engine,
        db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    bot.failures = 10_000
    client.post(WA, json=uplink("m1"))
    elapsed = timedelta(0)
    for wait in (*RETRY_SCHEDULE, timedelta(seconds=1)):
        push(client)
        clock.advance(seconds=wait.total_seconds())
        elapsed += wait
    assert elapsed > timedelta(days=1)
    with Session(engine) as session:
        [event] = session.exec(select(Event)).all()
    assert (event.push_state, event.push_attempts) == ("dead", len(RETRY_SCHEDULE) + 1)
    assert push(client) == 0

    from click.testing import CliRunner

    from receiver.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["events", "revive"],
                                env={"REPLYWINDOW_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert "1 dead" in result.output
    # The CLI revives with the real clock: the event is due from the real now, which this
    # test's clock (a day and more after 2026-11-24 10:00) may not have reached.
    clock.now = max(clock.now, datetime.now(UTC) + timedelta(seconds=1))
    bot.failures = 0
    assert push(client) == 1
    assert json.loads(bot.received[-1].content)["data"]["message_id"] == "m1"


def test_a_silent_bot_never_slows_the_webhooks(settings: Settings, clock: FakeClock) -> None:
    """A push hangs on a bot that does not answer; callbacks arriving meanwhile are still
    acknowledged (pushes run apart from the webhooks), and the push goes on afterwards."""
    answered = asyncio.Event()
    calls: list[httpx.Request] = []

    async def silent_bot(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        await answered.wait()  # silent until the test lets it answer
        return httpx.Response(204)

    app = create_app(settings, clock=clock, bot_transport=httpx.MockTransport(silent_bot))
    with SettlingClient(app) as client:
        client.post(WA, json=uplink("m0"))
        pushing = client.portal.start_task_soon(client.app_state["runtime"].pusher.push_due)
        while not calls:  # the push is in flight, waiting on the bot
            client.portal.call(asyncio.sleep, 0.01)

        for n in range(1, 6):
            assert client.post(WA, json=uplink(f"m{n}")).status_code == 200
        assert not pushing.done()

        client.portal.call(answered.set)
        assert pushing.result(timeout=10) == 1
