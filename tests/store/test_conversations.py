"""The window upsert in SQL must do what the pure rule says (sender.window.extended), on
SQLite and PostgreSQL: the rule is the oracle, the SQL is what runs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from sender.window import extended
from store import batch, bulk, conversations, db, migrate

T = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "times",
    [
        [T],
        [T, T + timedelta(hours=1)],
        [T, T - timedelta(hours=1)],
        [T, T],
        [T, T - timedelta(days=3), T + timedelta(seconds=1)],
        [T + timedelta(hours=5), T, T + timedelta(hours=2)],
    ],
)
def test_record_inbound_follows_the_pure_rule(engine: Engine, times: list[datetime]) -> None:
    expected = None
    for n, at in enumerate(times):
        with Session(engine) as session, session.begin():
            conversations.record_inbound(session, channel="whatsapp", account="91856321412",
                                         customer="91856321432", message_at=at,
                                         message_id=f"m{n}", customer_name=None, now=T)
        expected = extended(expected, at)
    with Session(engine) as session:
        row = conversations.get(session, channel="whatsapp", account="91856321412",
                                customer="91856321432")
    assert row is not None
    assert row.last_inbound_at == expected
    assert row.last_inbound_message_id == f"m{times.index(expected)}"


def test_a_window_read_leaves_no_read_transaction_open(tmp_path: Path) -> None:
    """SQLite: the lookup's own connection must not keep a snapshot after it has answered;
    one left open would keep every later write in the WAL (no checkpoint could reset it)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    migrate.upgrade(url)
    engine = db.make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            conversations.record_inbound(session, channel="whatsapp", account="91856321412",
                                         customer="91856321432", message_at=T,
                                         message_id="m0", customer_name=None, now=T)
        found = conversations.window_times(engine, channel="whatsapp", account="91856321412",
                                           customer="91856321432")
        assert found is not None and found.last_inbound_at == T
        later = T + timedelta(minutes=5)
        with Session(engine) as session, session.begin():
            conversations.record_inbound(session, channel="whatsapp", account="91856321412",
                                         customer="91856321432", message_at=later,
                                         message_id="m1", customer_name=None, now=later)
        with engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        assert busy == 0
        again = conversations.window_times(engine, channel="whatsapp", account="91856321412",
                                           customer="91856321432")
        assert again is not None and again.last_inbound_at == later
    finally:
        engine.dispose()


def test_a_batch_finds_its_known_message_refs_through_the_index_not_a_scan(
        tmp_path: Path) -> None:
    """The applier looks up each batch's known message refs in a table that only grows: on
    SQLite a row-value IN scans all of it, so the lookup must be one its planner answers from
    an index (EXPLAIN QUERY PLAN, on the migrated schema). Conversations' ids come back from
    their upserts' RETURNING, through the unique key."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    migrate.upgrade(url)
    engine = db.make_engine(url)
    with engine.connect() as connection:
        ref_ids, more = bulk.any_of(connection.dialect, "vendor_message_id", ["a", "b"], "text")
        plan = bulk.read(connection, "EXPLAIN QUERY PLAN " + batch.KNOWN_REFS + ref_ids,
                         ["whatsapp", *more])
    engine.dispose()
    steps = [step[-1] for step in plan]
    assert not any(re.match(r"SCAN (conversations|c|outbound_messages)\b", step)
                   for step in steps), steps
    assert any(re.match(r"SEARCH .* USING (COVERING )?INDEX", step) for step in steps), steps