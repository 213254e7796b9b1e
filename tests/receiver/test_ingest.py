"""The group-commit writer and the applier under pressure: values the store refuses,
shutdown, and two writers and two appliers (replicas) racing on the same customers."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, text
from sqlmodel import Session, select
from starlette.testclient import TestClient

from receiver.applier import Drainer
from receiver.errors import Unavailable
from receiver.ingest import Ingestor, Received, store_batch
from receiver.parsers import parsers
from receiver.settings import Settings
from store.db import make_engine
from store.models import ChatMessage, Conversation, EventKey, InboxBody, QuarantinedBody
from tests.conftest import DATA, TOKEN

WA = f"/webhooks/itnio/whatsapp/{TOKEN}"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def uplink(message_id: str, customer: str = "91856321432") -> dict[str, object]:
    body = json.loads((DATA / "webhooks" / "itnio_wa_uplink_text.json").read_text())
    return body | {"messageId": message_id, "from": {"phone": customer, "name": "C"}}


def count(engine: Engine, model: object) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())  # type: ignore[arg-type]


def test_an_id_too_long_to_store_is_400_and_quarantined(client: TestClient, engine: Engine) -> None:
    response = client.post(WA, json=uplink("m" * 300))

    assert response.status_code == 400
    assert response.json()["error"] == "wrong_shape"
    assert count(engine, QuarantinedBody) == 1


def test_a_long_id_that_fits_gets_a_short_dedup_key(client: TestClient, engine: Engine) -> None:
    for _ in range(2):
        assert client.post(WA, json=uplink("m" * 240)).status_code == 200

    with Session(engine) as session:
        keys = session.exec(select(EventKey.key)).all()
        states = session.exec(select(InboxBody.state).order_by(InboxBody.id)).all()  # type: ignore[arg-type]
    assert len(keys) == 1 and len(keys[0]) <= 255
    assert states == ["applied", "duplicate"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(client: TestClient, constant: str) -> None:
    body = json.dumps(uplink("m1")).replace('"channelType": 0', f'"channelType": {constant}')
    response = client.post(WA, content=body.encode())
    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")


def test_one_body_the_store_refuses_does_not_take_the_batch_down(
        engine: Engine, settings: Settings) -> None:
    read = parsers(settings)[("itnio", "whatsapp")]

    def item(message_id: str, *, long_key: bool = False) -> Received:
        raw = json.dumps(uplink(message_id, customer=f"918000000{message_id[-2:]}")).encode()
        events = read(raw)
        if long_key:  # past its column, as a parser bug could make it: PostgreSQL refuses it
            events = [replace(events[0], key="k" * 300)]  # type: ignore[type-var]
        return Received(vendor="itnio", route="whatsapp", received_at=NOW, headers={}, body=raw,
                        events=events)

    batch = [item("m01"), item("m02", long_key=True), item("m03")]
    with Session(engine) as session, session.begin():
        states = store_batch(session, batch)
    Drainer(engine, settings, lambda: NOW).drain()

    assert states[0] == states[2] == "pending"
    assert states[1] in ("pending", "unstorable")  # SQLite does not enforce VARCHAR lengths
    assert count(engine, InboxBody) + count(engine, QuarantinedBody) == 3  # nothing lost
    assert count(engine, Conversation) == (2 if states[1] == "unstorable" else 3)


def test_after_stop_submissions_are_refused_not_left_waiting(engine: Engine,
                                                            settings: Settings) -> None:
    async def scenario() -> None:
        ingestor = Ingestor(engine)
        await ingestor.start()
        raw = json.dumps(uplink("m1")).encode()
        events = parsers(settings)[("itnio", "whatsapp")](raw)
        stored = await ingestor.submit(Received("itnio", "whatsapp", NOW, {}, raw,
                                                events=events), timeout=10)
        assert stored == "pending"
        await ingestor.stop()
        with pytest.raises(Unavailable):
            await ingestor.submit(Received("itnio", "whatsapp", NOW, {}, raw), timeout=10)

    asyncio.run(scenario())


@pytest.mark.postgres
def test_two_writers_and_two_appliers_apply_everything_exactly_once(
        db_url: str, settings: Settings) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL")
    read = parsers(settings)[("itnio", "whatsapp")]
    customers = [f"9180000000{i}" for i in range(5)]
    bodies = []
    for n in range(400):
        # Each body names two customers in an order that differs between neighbours, the
        # pattern that deadlocks two transactions holding row locks in opposite order.
        pair = [customers[n % 5], customers[(n + 2) % 5]]
        if n % 2:
            pair.reverse()
        raw = json.dumps([uplink(f"m{n}-a", pair[0]), uplink(f"m{n}-b", pair[1])]).encode()
        bodies.append(raw)

    async def scenario() -> list[str]:
        engines = [make_engine(db_url), make_engine(db_url)]
        writers = [Ingestor(e) for e in engines]
        for writer in writers:
            await writer.start()
        jobs = [writers[n % 2].submit(Received("itnio", "whatsapp", NOW, {}, raw,
                                               events=read(raw)), timeout=60)
                for n, raw in enumerate(bodies)]
        # Each body submitted twice, once to each writer: the vendor retried.
        jobs += [writers[(n + 1) % 2].submit(Received("itnio", "whatsapp", NOW, {}, raw,
                                                      events=read(raw)), timeout=60)
                 for n, raw in enumerate(bodies)]
        states = await asyncio.gather(*jobs)
        for writer, engine in zip(writers, engines, strict=True):
            await writer.stop()
            engine.dispose()
        return list(states)

    states = asyncio.run(scenario())
    # Two replicas' appliers race over the same pending bodies.
    engines = [make_engine(db_url) for _ in range(2)]
    threads = [threading.Thread(target=Drainer(e, settings, lambda: NOW).drain) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()

    assert set(states) == {"pending"}
    check = make_engine(db_url)
    assert count(check, ChatMessage) == 800  # every event once, none twice
    assert count(check, EventKey) == 800
    assert count(check, InboxBody) == 800
    with Session(check) as session:  # each body once applied, its copy a duplicate
        body_states = session.exec(select(InboxBody.state)).all()
    assert sorted(set(body_states)) == ["applied", "duplicate"]
    assert body_states.count("applied") == 400
    check.dispose()


def test_a_batch_with_one_body_the_store_refuses_falls_back_to_body_by_body(
        engine: Engine, settings: Settings) -> None:
    """Through the writer: the fast path fails for the whole batch, the careful path then
    stores the good bodies and keeps the bad one (nothing lost, nothing half-applied)."""
    read = parsers(settings)[("itnio", "whatsapp")]

    def item(message_id: str, *, long_key: bool = False) -> Received:
        raw = json.dumps(uplink(message_id, customer=f"918000000{message_id[-2:]}")).encode()
        events = read(raw)
        if long_key:
            events = [replace(events[0], key="k" * 300)]  # type: ignore[type-var]
        return Received("itnio", "whatsapp", NOW, {}, raw, events=events)

    async def scenario() -> list[str]:
        writer = Ingestor(engine)
        await writer.start()
        states = await asyncio.gather(*(writer.submit(i, timeout=30) for i in (
            item("m01"), item("m02", long_key=True), item("m03"))))
        await writer.stop()
        return list(states)

    states = asyncio.run(scenario())
    Drainer(engine, settings, lambda: NOW).drain()
    assert states[0] == states[2] == "pending"
    assert states[1] in ("pending", "unstorable")
    assert count(engine, InboxBody) + count(engine, QuarantinedBody) == 3
    assert count(engine, ChatMessage) == (2 if states[1] == "unstorable" else 3)


def test_bodies_submitted_together_are_stored_in_order_and_stop_keeps_what_is_queued(
        engine: Engine, settings: Settings) -> None:
    """Many submissions at once share commits (a writer takes what queued meanwhile), each
    is answered with its own state, and `stop` right after stores every body already queued
    before it returns. One writer, one batch at a time: ids follow the order of submission."""
    read = parsers(settings)[("itnio", "whatsapp")]
    raws = [json.dumps(uplink(f"q{n}", customer=f"9180000{n:05d}")).encode()
            for n in range(300)]

    async def scenario() -> list[str]:
        writer = Ingestor(engine)
        await writer.start()
        jobs = [asyncio.ensure_future(writer.submit(
            Received("itnio", "whatsapp", NOW, {}, raw, events=read(raw)), timeout=30))
            for raw in raws]
        await asyncio.sleep(0)  # every job queued its body
        await writer.stop()
        return list(await asyncio.wait_for(asyncio.gather(*jobs), 10))

    assert asyncio.run(scenario()) == ["pending"] * 300
    with Session(engine) as session:
        bodies = session.exec(select(InboxBody.body).order_by(InboxBody.id)).all()  # type: ignore[arg-type]
    assert list(bodies) == raws


@pytest.mark.postgres
def test_a_writer_whose_connection_was_cut_stores_the_batch_all_the_same(
        db_url: str, engine: Engine, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL: the writer keeps a connection of its own; cut, the batch it was to carry
    goes through a session, and the next batch opens a new one."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the writer's own connection is PostgreSQL's")
    read = parsers(settings)[("itnio", "whatsapp")]

    def item(message_id: str) -> Received:
        raw = json.dumps(uplink(message_id)).encode()
        return Received("itnio", "whatsapp", NOW, {}, raw, events=read(raw))

    def cut_others() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    async def scenario() -> list[str]:
        writer = Ingestor(engine)
        await writer.start()
        states = [await writer.submit(item("m1"), timeout=30)]
        cut_others()
        states.append(await writer.submit(item("m2"), timeout=30))
        states.append(await writer.submit(item("m3"), timeout=30))
        await writer.stop()
        return states

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) == ["pending"] * 3
    assert [getattr(r, "action", "") for r in caplog.records].count(
        "webhook_append_failed") == 1  # m2, and only m2, went the long way
    Drainer(engine, settings, lambda: NOW).drain()
    assert count(engine, InboxBody) == 3
    assert count(engine, ChatMessage) == 3


@pytest.mark.postgres
def test_bodies_whose_statement_the_closing_loop_cut_off_are_stored_all_the_same(
        db_url: str, engine: Engine, settings: Settings) -> None:
    """PostgreSQL: the event loop closes (no `stop`: asyncio.run cancels what still runs)
    while the writer's statement is held up by a lock. Its batch, and the bodies queued
    behind it, go to the writer thread, which stores them once the lock is gone."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the writer's own statement is PostgreSQL's")
    read = parsers(settings)[("itnio", "whatsapp")]
    raws = [json.dumps(uplink(f"cut{n}", customer=f"9181000{n:05d}")).encode()
            for n in range(5)]

    def item(raw: bytes) -> Received:
        return Received("itnio", "whatsapp", NOW, {}, raw, events=read(raw))

    def insert_waits_for_the_lock() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO inbox_bodies%'"))
                .scalar())

    async def scenario() -> None:
        writer = Ingestor(engine)
        await writer.start()
        # Never answered: asyncio.run cancels them when this returns.
        waiting = [asyncio.ensure_future(writer.submit(item(raws[0]), timeout=30))]
        deadline = time.monotonic() + 10
        while not await asyncio.to_thread(insert_waits_for_the_lock):
            assert time.monotonic() < deadline, "the writer's statement never reached the lock"
            await asyncio.sleep(0.02)
        waiting += [asyncio.ensure_future(writer.submit(item(raw), timeout=30))
                    for raw in raws[1:]]  # queued behind the statement that is out
        await asyncio.sleep(0)
        assert not any(job.done() for job in waiting)

    with engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE inbox_bodies IN ACCESS EXCLUSIVE MODE"))
        asyncio.run(scenario())
        blocker.rollback()  # the lock goes
    deadline = time.monotonic() + 10
    while count(engine, InboxBody) < len(raws) and time.monotonic() < deadline:
        time.sleep(0.05)
    with Session(engine) as session:
        stored = session.exec(select(InboxBody.body)).all()  # type: ignore[arg-type]
    assert set(stored) == set(raws)  # none lost (a statement the server ran anyway: twice)


def test_a_stored_body_keeps_its_bytes_headers_and_time_as_received(
        engine: Engine, settings: Settings) -> None:
    """Through the writer (on PostgreSQL its one statement of unnested arrays): what is
    stored is what came, to the byte."""
    raw = json.dumps(uplink("m-kept")).encode() + b"\n\xff"  # not even UTF-8 at the end
    headers = {"content-type": "application/json", "x-forwarded-for": "203.0.113.7",
               "x-备注": "值"}
    received_at = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    events = parsers(settings)[("itnio", "whatsapp")](json.dumps(uplink("m-kept")).encode())

    async def scenario() -> str:
        writer = Ingestor(engine)
        await writer.start()
        state = await writer.submit(Received("itnio", "whatsapp", received_at, headers, raw,
                                             events=events), timeout=30)
        await writer.stop()
        return state

    assert asyncio.run(scenario()) == "pending"
    with Session(engine) as session:
        [stored] = session.exec(select(InboxBody)).all()
    assert (stored.vendor, stored.route, stored.body, stored.headers, stored.received_at,
            stored.state, stored.dedup_key, stored.event_count, stored.detail) == (
        "itnio", "whatsapp", raw, headers, received_at, "pending", events[0].key, 1, None)
