"""PostgreSQL reads on the event loop (store/pg_reads.py), against the real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

from store import conversations, db
from store.asyncpg_url import asyncpg_params
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
            [first] = await reads.rows("SELECT pg_backend_pid()", ())
            with psycopg.connect(pg_engine.url.set(drivername="postgresql").render_as_string(
                    hide_password=False), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (first[0],))
            [again] = await reads.rows("SELECT pg_backend_pid()", ())
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
        asyncio.run(reads.rows("SELECT 1", ()))


def test_an_unreachable_server_is_said_to_every_lookup_that_waited_together() -> None:
    reads = AsyncReads(make_url("postgresql+psycopg://nobody@127.0.0.1:1/none"))

    async def lookups() -> list[BaseException | conversations.WindowTimes | None]:
        try:
            return await asyncio.gather(
                *(conversations.window_times_pg(reads, postgresql.dialect(), channel="whatsapp",
                                                account="91856321412", customer=f"9185632{i:04d}")
                  for i in range(5)), return_exceptions=True)
        finally:
            await reads.close()

    assert all(isinstance(found, db.Unreachable) for found in asyncio.run(lookups()))


class CountedReads(AsyncReads):
    """The real reads, counting the statements sent."""

    statements = 0

    async def rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self.statements += 1
        return await super().rows(sql, params)


def _customers_seen(engine: Engine, count: int) -> list[str]:
    customers = [f"9170000{i:05d}" for i in range(count)]
    with Session(engine) as session, session.begin():
        for i, customer in enumerate(customers):
            conversations.record_inbound(
                session, channel="whatsapp", account="91856321412", customer=customer,
                message_at=T - timedelta(minutes=i), message_id=f"m{customer}",
                customer_name=None, now=T)
    return customers


def test_lookups_that_arrive_together_are_one_statement_each_answered_its_own(
        pg_engine: Engine) -> None:
    seen = _customers_seen(pg_engine, 30)
    asked = [*seen, "91600000001", seen[3], "91600000002", seen[0]]  # absent ones, repeats

    async def scenario() -> tuple[list[conversations.WindowTimes | None], int]:
        reads = CountedReads(pg_engine.url)
        try:
            found = await asyncio.gather(*(conversations.window_times_pg(
                reads, pg_engine.dialect, channel="whatsapp", account="91856321412",
                customer=customer) for customer in asked))
            return list(found), reads.statements
        finally:
            await reads.close()

    found, statements = asyncio.run(scenario())
    assert statements == 1
    for customer, times in zip(asked, found, strict=True):
        if customer.startswith("916"):
            assert times is None
        else:
            assert times is not None
            assert times.last_inbound_at == T - timedelta(minutes=seen.index(customer))


def test_a_lookup_given_up_on_leaves_the_others_answered(pg_engine: Engine) -> None:
    seen = _customers_seen(pg_engine, 3)

    async def scenario() -> list[BaseException | conversations.WindowTimes | None]:
        reads = AsyncReads(pg_engine.url)
        try:
            lookups = [asyncio.ensure_future(conversations.window_times_pg(
                reads, pg_engine.dialect, channel="whatsapp", account="91856321412",
                customer=customer)) for customer in seen]
            await asyncio.sleep(0)  # each has queued its key
            lookups[1].cancel()
            return await asyncio.gather(*lookups, return_exceptions=True)
        finally:
            await reads.close()

    first, second, third = asyncio.run(scenario())
    assert isinstance(second, asyncio.CancelledError)
    assert isinstance(first, conversations.WindowTimes) and first.last_inbound_at == T
    assert isinstance(third, conversations.WindowTimes)
    assert third.last_inbound_at == T - timedelta(minutes=2)


def test_closing_the_reads_ends_the_lookups_still_waiting(pg_engine: Engine) -> None:
    async def scenario() -> list[BaseException | conversations.WindowTimes | None]:
        reads = AsyncReads(pg_engine.url)
        lookups = [asyncio.ensure_future(conversations.window_times_pg(
            reads, pg_engine.dialect, channel="whatsapp", account="91856321412",
            customer="91856321432")) for _ in range(3)]
        await asyncio.sleep(0)  # queued, not yet asked
        await reads.close()
        return await asyncio.wait_for(asyncio.gather(*lookups, return_exceptions=True), 5)

    assert all(isinstance(found, asyncio.CancelledError) for found in asyncio.run(scenario()))


def _application_name(url: URL) -> str:
    """The application name the server sees on a connection of AsyncReads made from `url`."""
    async def scenario() -> list[Any]:
        reads = AsyncReads(url)
        try:
            return await reads.rows("SELECT current_setting('application_name')", ())
        finally:
            await reads.close()

    [[name]] = asyncio.run(scenario())
    return str(name)


def test_libpq_s_connect_timeout_is_the_connect_s_and_other_url_settings_reach_the_server(
        pg_engine: Engine) -> None:
    url = pg_engine.url.update_query_dict({"connect_timeout": "3",
                                           "application_name": "replywindow-reads"})
    assert asyncpg_params(url)[1] == 3.0
    assert "connect_timeout" not in asyncpg_params(url)[0]
    with pytest.raises(ValueError, match="connect_timeout in the database URL"):
        asyncpg_params(url.update_query_dict({"connect_timeout": "soon"}))

    assert _application_name(url) == "replywindow-reads"


def test_libpq_only_settings_in_the_url_are_not_sent_to_the_server(pg_engine: Engine) -> None:
    # The engine (psycopg, libpq) takes these; sent to the server as settings, as asyncpg
    # would, each would be refused and every lookup would fail.
    url = pg_engine.url.update_query_dict({
        "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
        "keepalives_count": "3", "tcp_user_timeout": "10000", "gssencmode": "disable",
        "fallback_application_name": "replywindow-fallback"})
    engine = db.make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()

    assert _application_name(url) == "replywindow-fallback"


def test_a_statement_that_fails_raises_its_own_error_and_the_reads_go_on(
        pg_engine: Engine) -> None:
    async def scenario() -> tuple[BaseException | None, list[Any]]:
        reads = AsyncReads(pg_engine.url, size=1)
        try:
            failed = None
            try:
                await reads.rows("SELECT 1 / $1::int", (0,))
            except Exception as exc:
                failed = exc
            return failed, await reads.rows("SELECT 1 / $1::int", (1,))
        finally:
            await reads.close()

    failed, rows = asyncio.run(scenario())
    assert isinstance(failed, asyncpg.exceptions.DivisionByZeroError)
    assert not isinstance(failed, db.Unreachable)
    assert [tuple(row) for row in rows] == [(1,)]


def test_the_lookup_is_planned_once_and_planned_again_when_the_table_is_analyzed(
        pg_engine: Engine) -> None:
    """The reads keep one plan of the lookup a connection (plan_cache_mode). One made on a
    near-empty table scans all of it; once the table has grown and is analyzed (as
    autovacuum does), the same connection's lookup probes the unique key instead."""
    ask = "('{whatsapp}', '{91856321412}', '{917000000042}')"

    async def plan(reads: AsyncReads) -> tuple[str, int]:
        [(name, generic)] = await reads.rows(
            "SELECT name, generic_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%FROM unnest%' "
            "AND statement NOT LIKE '%pg_prepared_statements%'", ())  # not this one itself
        lines = await reads.rows(f"EXPLAIN EXECUTE {name}{ask}", ())
        return "\n".join(line[0] for line in lines), int(generic)

    async def scenario() -> tuple[str, int, str, conversations.WindowTimes | None]:
        reads = AsyncReads(pg_engine.url, size=1)  # one connection: every read on it
        try:
            await conversations.window_times_pg(
                reads, pg_engine.dialect, channel="whatsapp", account="91856321412",
                customer="91856321432")
            small, generic = await plan(reads)
            with psycopg.connect(pg_engine.url.set(drivername="postgresql").render_as_string(
                    hide_password=False), autocommit=True) as admin:
                admin.execute(
                    "INSERT INTO conversations (channel, account, customer, last_inbound_at, "
                    "created_at, updated_at) SELECT 'whatsapp', '91856321412', "
                    "(917000000000 + n)::text, %s - n * interval '1 minute', %s, %s "
                    "FROM generate_series(0, 49999) AS n", (T, T, T))
                admin.execute("ANALYZE conversations")
            found = await conversations.window_times_pg(
                reads, pg_engine.dialect, channel="whatsapp", account="91856321412",
                customer="917000000042")
            large, _ = await plan(reads)
            return small, generic, large, found
        finally:
            await reads.close()

    small, generic, large, found = asyncio.run(scenario())
    assert generic >= 1
    assert "Seq Scan on conversations" in small
    assert "Seq Scan" not in large and "Index Scan using uq_conversations_key" in large
    assert found is not None and found.last_inbound_at == T - timedelta(minutes=42)
