"""The PostgreSQL webhook writer's statement (store/pg_append.py), against the real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from store import json_text
from store.pg_append import PgAppend, arrays
from tests.conftest import postgres_only

T = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def db_url(pg_url: str | None) -> str:
    return postgres_only(pg_url)


def _row(n: int, **fields: Any) -> dict[str, Any]:
    return {"vendor": "itnio", "route": "whatsapp", "received_at": T,
            "headers": {"content-type": "application/json", "x-名": "值"},
            "body": b"\xff not even UTF-8 " + str(n).encode(), "state": "pending",
            "dedup_key": f"k{n}", "event_count": 1, "detail": None} | fields


def test_a_batch_is_stored_in_order_and_committed_when_append_returns(engine: Engine) -> None:
    rows = [_row(n) for n in range(3)] + [_row(3, state="failed", dedup_key=None,
                                               detail="parser broke")]

    async def scenario() -> None:
        append = PgAppend(engine.url)
        await append.append(rows[:2])
        await append.append(rows[2:])  # the same connection, kept between batches
        await append.close()

    asyncio.run(scenario())
    with engine.connect() as conn:  # another connection: what was committed
        stored = conn.execute(text(
            "SELECT vendor, route, received_at, headers, body, state, dedup_key, event_count,"
            " detail FROM inbox_bodies ORDER BY id")).all()
    assert [tuple(r) for r in stored] == [tuple(row.values()) for row in rows]


def test_the_headers_go_as_the_json_columns_write_them_and_a_naive_time_is_refused() -> None:
    columns = arrays([_row(1)])

    assert columns[3] == [json_text.dumps(_row(1)["headers"])]
    with pytest.raises(ValueError, match="naive"):
        arrays([_row(1, received_at=T.replace(tzinfo=None))])


def test_a_refused_batch_stores_none_of_its_rows_and_the_next_batch_goes_through(
        engine: Engine) -> None:
    async def scenario() -> None:
        append = PgAppend(engine.url)
        await append.append([_row(1)])
        with pytest.raises(Exception, match="too long"):  # the server refuses it
            await append.append([_row(2, dedup_key="k" * 300)])
        await append.append([_row(3)])
        await append.close()

    asyncio.run(scenario())
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT dedup_key FROM inbox_bodies ORDER BY id")).scalars()
        assert list(keys) == ["k1", "k3"]


def test_libpq_only_settings_in_the_url_do_not_stop_the_writer(engine: Engine) -> None:
    # The engine (libpq) takes these; sent to the server as settings, each would be refused
    # and every webhook would be stored the long way, or not at all (store/asyncpg_url.py).
    url = engine.url.update_query_dict({"keepalives": "1", "tcp_user_timeout": "10000",
                                        "gssencmode": "disable", "connect_timeout": "3"})

    async def scenario() -> None:
        append = PgAppend(url)
        await append.append([_row(1)])
        await append.close()

    asyncio.run(scenario())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM inbox_bodies")).scalar() == 1
