"""PostgreSQL reads on the event loop (store/pg_reads.py), against the real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import Session

from store import conversations, db
from store.pg_reads import AsyncReads
from tests.conftest import postgres_only

T = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def db_url(pg_url: str | None) -> str:
    return postgres_only(pg_url)


@pytest.fixture
def pg_engine(engine: Engine) -> Engine:
    with Session(engine) as session, session.begin():
        conversations.record_inbound(session, channel="whatsapp", account="91856321412",
                                     customer="91856321432", message_at=T, message_id="m0",
                                     customer_name=None, now=T)
    return engine


def _times(engine: Engine, reads: AsyncReads, customer: str) -> conversations.WindowTimes | None:
    return asyncio.run(_read_then_close(engine, reads, customer))


async def _read_then_close(engine: Engine, reads: AsyncReads,
                           customer: str) -> conversations.WindowTimes | None:
    try:
        return await conversations.window_times_pg(
            reads, engine.dialect, channel="whatsapp", account="91856321412", customer=customer)
    finally:
        await reads.close()


def test_a_window_is_read_with_its_times_in_utc(pg_engine: Engine) -> None:
    found = _times(pg_engine, AsyncReads(pg_engine.url), "91856321432")
    assert found is not None
    assert found.last_inbound_at == T and found.last_inbound_at.tzinfo is UTC
    assert found.last_outbound_at is None
    assert _times(pg_engine, AsyncReads(pg_engine.url), "nobody") is None


def test_a_connection_the_server_ended_is_replaced_and_the_read_answered(
        pg_engine: Engine) -> None:
    async def scenario() -> tuple[int, int, conversations.WindowTimes | None]:
        reads = AsyncReads(pg_engine.url, size=1)
        try:
            first = await reads.one("SELECT pg_backend_pid()", ())
            assert first is not None
            with psycopg.connect(pg_engine.url.set(drivername="postgresql").render_as_string(
                    hide_password=False), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (first[0],))
            again = await reads.one("SELECT pg_backend_pid()", ())
            assert again is not None
            window = await conversations.window_times_pg(
                reads, pg_engine.dialect, channel="whatsapp", account="91856321412",
                customer="91856321432")
            return first[0], again[0], window
        finally:
            await reads.close()

    before, after, window = asyncio.run(scenario())
    assert before != after
    assert window is not None and window.last_inbound_at == T


def test_an_unreachable_server_is_said_so() -> None:
    reads = AsyncReads(make_url("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    with pytest.raises(db.Unreachable):
        asyncio.run(reads.one("SELECT 1", ()))
