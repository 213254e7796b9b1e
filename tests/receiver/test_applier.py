"""The applier: a batch applied all at once has the very effects of its bodies applied one by
one, exactly once, and it takes the fast path on the vendors' own examples."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from receiver import crypto
from receiver.applier import APPLY_LOCK, Drainer, apply_batch
from receiver.apply import apply_events
from receiver.ingest import Received, _row, store_batch_fast
from receiver.parsers import parsers
from receiver.pending_cursor import GAP_SECONDS, RESCAN_SECONDS
from receiver.settings import Settings
from store import db, inbox, migrate
from store.models import OutboundMessage
from store.spool import Spool, open_for
from tests.conftest import DATA, TOKEN

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
YZJ_KEY = "replywindowTestVectorKey32bytes!"


def _example(name: str) -> bytes:
    return (DATA / "webhooks" / name).read_bytes()


def _json(name: str, **changes: Any) -> bytes:
    return json.dumps(json.loads(_example(name)) | changes).encode()


def _yzj(name: str) -> bytes:
    return crypto.encrypt(_example(name), crypto.decode_key(YZJ_KEY))


def _bodies() -> list[tuple[str, str, bytes]]:
    """The vendors' examples, with what makes batches hard: the same event twice in one
    batch, a STOP, a status about a message of ours, one about none, one customer twice."""
    return [
        ("itnio", "whatsapp", _example("itnio_wa_uplink_text.json")),
        ("itnio", "whatsapp", _example("itnio_wa_uplink_text.json")),  # the vendor retried
        ("itnio", "whatsapp", _json("itnio_wa_uplink_text.json", messageId="m-stop",
                                    message={"type": "text", "text": {"body": "STOP"}})),
        ("itnio", "whatsapp", _example("itnio_wa_uplink_image.json")),
        ("itnio", "whatsapp", _example("itnio_wa_status_delivered.json")),  # ours
        ("itnio", "whatsapp", _example("itnio_wa_status_failed.json")),
        ("itnio", "whatsapp", _json("itnio_wa_status_delivered.json", messageId="not-ours")),
        ("itnio", "whatsapp", _example("itnio_wa_template_status.json")),
        ("itnio", "sms", _example("itnio_sms_mo.json")),
        ("itnio", "sms", _example("itnio_sms_dlr.json")),
        ("yzj", "wecom", _yzj("yzj_chatmsg_inbound.json")),
        ("yzj", "wecom", _yzj("yzj_chatmsg_echo.json")),
        ("yzj", "wecom", _yzj("yzj_chatmsg_send_fail.json")),
        ("itnio", "whatsapp", _json("itnio_wa_uplink_text.json", messageId="m-later")),
    ]


def _settings(url: str) -> Settings:
    return Settings(database_url=url, webhook_token=TOKEN, yzj_encoding_aes_key=YZJ_KEY,
                    bot_webhook_url="http://bot.invalid/hook",
                    _env_file=None)  # type: ignore[call-arg]


def _store(engine: Engine, settings: Settings, spool: Spool | None = None) -> None:
    """The bodies, pending in `inbox_bodies` or, given a spool, in the spool (SQLite)."""
    read = parsers(settings)
    items = [Received(vendor, route, NOW, {}, body,
                      events=read[(vendor, route)](body)) for vendor, route, body in _bodies()]
    with Session(engine) as session, session.begin():
        session.add(OutboundMessage(  # the message the delivered status is about
            id="msg_ours", channel="whatsapp", account="91856321412", recipient="91856321432",
            route="custom", status="accepted", vendor_message_id="1786543210987654321",
            created_at=NOW - timedelta(minutes=5), status_at=NOW - timedelta(minutes=5)))
        session.flush()
        if spool is None:
            assert set(store_batch_fast(session, items)) == {"pending"}
    if spool is not None:
        spool.append([_row(item) for item in items])


def _one_by_one(engine: Engine, settings: Settings) -> None:
    read = parsers(settings)
    with Session(db.writer(engine)) as session, session.begin():
        rows = inbox.pending(session, limit=1000)
        inbox.set_states(session, [
            (row.id, apply_events(session, events=read[(row.vendor, row.route)](row.body),
                                  inbox_body_id=row.id, received_at=row.received_at,
                                  settings=settings, now=NOW), NOW, None)
            for row in rows])


TABLES = {
    "conversations": "channel, account, customer, customer_name, last_inbound_at, "
                     "last_inbound_message_id, last_outbound_at",
    "chat_messages": "conversation_id, channel, direction, vendor_message_id, msg_type, text, "
                     "sent_at, inbox_body_id",
    "status_events": "channel, vendor_message_id, client_ref, message_id, status, occurred_at, "
                     "failure_code, inbox_body_id",
    "event_keys": "key, inbox_body_id",
    "events": "kind, account, conversation_key, data, push_state",
    "opt_outs": "customer, opted_out",
    "templates": "vendor_template_id, name, status",
    "outbound_messages": "id, status, delivered_at, failed_at",
    "inbox_bodies": "id, state, applied_at",
}


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {table: [tuple(map(str, row)) for row in
                        conn.execute(text(f"SELECT {columns} FROM {table} ORDER BY 1, 2"))]
                for table, columns in TABLES.items()}


def test_a_batch_has_the_effects_of_its_bodies_applied_one_by_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    snapshots = []
    for name in ("batch", "spooled", "one_by_one"):
        url = f"sqlite:///{tmp_path / name}.db"
        migrate.upgrade(url)
        engine, settings = db.make_engine(url), _settings(url)
        spool = open_for(url, above=0) if name == "spooled" else None
        _store(engine, settings, spool)
        with caplog.at_level(logging.WARNING):
            if name == "one_by_one":
                _one_by_one(engine, settings)
            else:  # spooled: moved in as applied, then set otherwise where they were not
                drainer = Drainer(engine, settings, lambda: NOW, spool=spool)
                assert drainer.drain() == len(_bodies())
        snapshots.append(_snapshot(engine))
        engine.dispose()

    batch, spooled, one_by_one = snapshots
    assert batch == one_by_one
    assert spooled == one_by_one
    assert not [r for r in caplog.records if getattr(r, "action", "") == "webhook_apply_careful"]
    states = [state for _, state, _ in batch["inbox_bodies"]]
    assert "duplicate" in states and "failed" not in states
    assert [row[0] for row in batch["opt_outs"]] == ["91856321432"]


def test_the_fast_path_applies_the_examples_exactly_once(
        engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(db_url)
    _store(engine, settings)
    drainer = Drainer(engine, settings, lambda: NOW)

    with caplog.at_level(logging.WARNING):
        assert drainer.drain() == len(_bodies())
    assert drainer.drain() == 0  # nothing is applied twice

    assert not [r for r in caplog.records if getattr(r, "action", "") == "webhook_apply_careful"]
    snapshot = _snapshot(engine)
    assert {state for _, state, _ in snapshot["inbox_bodies"]} <= {"applied", "duplicate"}
    assert ("msg_ours", "delivered") == snapshot["outbound_messages"][0][:2]


def test_bodies_another_applier_applied_after_this_one_read_them_are_left_as_it_left_them(
        engine: Engine, db_url: str) -> None:
    """Bodies are read before the appliers' lock is taken: another applier (a replica) may
    apply them meanwhile. Under the lock their states are read again, and only those still
    pending are applied and written (each body once, with its outcome)."""
    settings = _settings(db_url)
    _store(engine, settings)
    other = Drainer(engine, settings, lambda: NOW)
    by_the_other: list[int] = []

    def clock() -> datetime:  # asked once the batch is read, before the lock is taken
        if not by_the_other:
            by_the_other.append(other.drain())
        return NOW + timedelta(minutes=1)

    done, _ = apply_batch(engine, settings=settings, read=parsers(settings), clock=clock)

    assert by_the_other == [len(_bodies())] and done == 0
    with Session(engine) as session:
        bodies = inbox.bodies_page(session, after_id=0, states=None, limit=100)
    assert len(bodies) == len(_bodies())
    assert {b.applied_at for b in bodies} == {NOW}
    assert {b.state for b in bodies} <= {"applied", "duplicate"}


def test_a_batch_is_128_bodies_on_sqlite_and_512_on_postgresql(
        engine: Engine, db_url: str) -> None:
    """SQLite's sends wait for the applier's write lock, so its transactions stay short; on
    PostgreSQL a transaction is a dozen round trips whatever its size, so it takes more."""
    settings = _settings(db_url)
    read = parsers(settings)
    bodies = [_json("itnio_wa_uplink_text.json", messageId=f"m-{n}") for n in range(600)]
    with Session(engine) as session, session.begin():
        store_batch_fast(session, [Received("itnio", "whatsapp", NOW, {}, body,
                                            events=read[("itnio", "whatsapp")](body))
                                   for body in bodies])
    commits: list[int] = []
    drainer = Drainer(engine, settings, lambda: NOW, on_applied=lambda: commits.append(1))

    assert drainer.drain() == 600
    assert len(commits) == (2 if engine.dialect.name == "postgresql" else 5)
    with Session(engine) as session:
        assert inbox.count_pending(session) == 0


def _uplink(settings: Settings, message_id: str) -> Received:
    body = _json("itnio_wa_uplink_text.json", messageId=message_id)
    return Received("itnio", "whatsapp", NOW, {}, body,
                    events=parsers(settings)[("itnio", "whatsapp")](body))


def _applied_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(text(
            "SELECT vendor_message_id FROM chat_messages")).scalars())


@pytest.mark.postgres
def test_a_body_committed_after_a_later_one_was_applied_is_applied_all_the_same(
        db_url: str, engine: Engine) -> None:
    """PostgreSQL hands out ids before commit: the applier's cursor passes an id still being
    committed, and finds its body once it is."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's bodies are found by state, and commit in id order")
    settings = _settings(db_url)
    drainer = Drainer(engine, settings, lambda: NOW)
    assert drainer.drain() == 0  # placed
    with Session(engine) as slow:
        slow.begin()
        store_batch_fast(slow, [_uplink(settings, "m-slow")])  # id 1, not committed
        with Session(engine) as fast, fast.begin():
            store_batch_fast(fast, [_uplink(settings, "m-fast")])  # id 2
        assert drainer.drain() == 1
        assert _applied_ids(engine) == ["m-fast"]
        slow.commit()
    assert drainer.drain() == 1
    assert _applied_ids(engine) == ["m-fast", "m-slow"]


@pytest.mark.postgres
def test_a_body_committed_too_late_for_the_cursor_is_found_by_the_next_rescan(
        db_url: str, engine: Engine) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's bodies are found by state")
    settings = _settings(db_url)
    now = [0.0]
    drainer = Drainer(engine, settings, lambda: NOW, ticks=lambda: now[0])
    assert drainer.drain() == 0
    with Session(engine) as slow:
        slow.begin()
        store_batch_fast(slow, [_uplink(settings, "m-slow")])
        with Session(engine) as fast, fast.begin():
            store_batch_fast(fast, [_uplink(settings, "m-fast")])
        assert drainer.drain() == 1
        now[0] += GAP_SECONDS + 1  # the cursor gives the id up: a rollback, as far as it knows
        assert drainer.drain() == 0
        slow.commit()
    assert drainer.drain() == 0
    now[0] += RESCAN_SECONDS
    assert drainer.drain() == 1
    assert _applied_ids(engine) == ["m-fast", "m-slow"]


def _wait_for_a_waiter_on_the_lock(engine: Engine) -> None:
    """Until a transaction waits for an advisory lock (PostgreSQL's pg_locks says so)."""
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND NOT granted")).scalar():
                return
        assert time.monotonic() < deadline, "nothing waited for the appliers' lock"
        time.sleep(0.01)


@pytest.mark.postgres
def test_a_drain_waits_for_what_another_drain_has_read_but_not_yet_applied(
        db_url: str, engine: Engine) -> None:
    """Two drains at once (the applier's thread and a test's settle) share the cursor: the
    second returns only once the first has applied what it read past it."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the cursor is PostgreSQL's")
    settings = _settings(db_url)
    drainer = Drainer(engine, settings, lambda: NOW)
    drainer.drain()
    with Session(engine) as session, session.begin():
        store_batch_fast(session, [_uplink(settings, "m-1")])
    with engine.connect() as blocker:  # holds the appliers' lock
        blocker.execute(text("SELECT pg_advisory_lock(:k)"), {"k": APPLY_LOCK})
        first = threading.Thread(target=drainer.drain)
        first.start()
        _wait_for_a_waiter_on_the_lock(engine)  # it has read the body past the cursor
        release = threading.Timer(0.5, lambda: blocker.execute(
            text("SELECT pg_advisory_unlock(:k)"), {"k": APPLY_LOCK}))
        release.start()
        drainer.drain()
        assert _applied_ids(engine) == ["m-1"]
        release.join()
    first.join()
