"""The window upsert in SQL must do what the pure rule says (sender.window.extended), on
SQLite and PostgreSQL: the rule is the oracle, the SQL is what runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from sender.window import extended
from store import conversations

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
