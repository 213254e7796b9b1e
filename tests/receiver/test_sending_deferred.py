"""Writes left to the end of a group commit's batch go to the driver's executemany, compiled
once (sender/group_commit.py): what they store is, byte for byte, what SQLAlchemy stores."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from sender.group_commit import Deferring, GroupCommit, later
from store import conversations, db, events, outbox

AT = datetime(2026, 11, 24, 13, 48, 35, 123456, tzinfo=UTC)


@pytest.fixture
def sqlite_path(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "replywindow.db"
    shutil.copy(sqlite_template, path)
    return str(path)


@pytest.fixture
def sqlite_engine(sqlite_path: str) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{sqlite_path}")
    yield engine
    engine.dispose()


def _writes(suffix: str) -> list[tuple[Any, dict[str, Any]]]:
    """The deferred writes of a send, with values of every kind (JSON, times, booleans)."""
    message_id = f"msg_{suffix}"
    row = outbox.NEW_ROW | {
        "id": message_id, "channel": "whatsapp", "account": "91856321412",
        "recipient": f"9197{suffix}", "status": "sending", "attempts": 1,
        "request": {"message": {"type": "text", "text": {"body": "héllo 你好"}}, "n": [1, 2.5]},
        "created_at": AT, "status_at": AT, "next_attempt_at": AT + timedelta(minutes=2),
        "route": "custom", "client_ref": message_id, "request_hash": "ab" * 32}
    return [
        (outbox.ADD, {k: v for k, v in row.items() if v is not None}),
        (events.ADD_SQLITE, events.row(kind="message.route", account="91856321412",
                                       conversation_key=f"whatsapp:9197{suffix}",
                                       data={"id": message_id, "route": "custom"}, now=AT,
                                       push=True)),
        (conversations.RECORD_REPLY, {"channel": "whatsapp", "account": "91856321412",
                                      "customer": f"9197{suffix}", "at": AT, "now": AT}),
    ]


def _stored(path: str, table: str, where: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as raw:  # as stored: no SQLAlchemy result processing
        rows = raw.execute(f"SELECT * FROM {table} WHERE {where}").fetchall()
    return [tuple(str(v).replace("_a", "_X").replace("_b", "_X") for v in r[1:]) for r in rows]


def test_deferred_writes_store_what_sqlalchemy_stores(sqlite_engine: Engine,
                                                      sqlite_path: str) -> None:
    # a: written at once, through SQLAlchemy; b: left to the end of a batch (the driver).
    with Session(sqlite_engine) as session, session.begin():
        for statement, params in _writes("_a"):
            session.connection().execute(statement, params)

    async def batch() -> None:
        commits = GroupCommit(sqlite_engine)

        def work(session: Session) -> None:
            for statement, params in _writes("_b"):
                later(session, statement, params)
            outbox.update_row(Deferring(session), "msg__b", {"status": "accepted",
                                                              "accepted_at": AT})
        await asyncio.gather(commits.run(work, defers=True),
                             commits.run(lambda s: None, defers=True))

    asyncio.run(batch())
    with Session(sqlite_engine) as session, session.begin():
        outbox.update_row(session, "msg__a", {"status": "accepted", "accepted_at": AT})

    for table, where in (("outbound_messages", "id = 'msg_{}'"),
                         ("events", "conversation_key = 'whatsapp:9197{}'"),
                         ("conversations", "customer = '9197{}'")):
        a = _stored(sqlite_path, table, where.format("_a"))
        b = _stored(sqlite_path, table, where.format("_b"))
        assert a and a == b, table


def test_a_statement_with_per_row_defaults_is_left_to_sqlalchemy(sqlite_engine: Engine) -> None:
    """A row that leaves out columns with Python-side defaults (`status`, `request`, ...)
    gets them, as SQLAlchemy computes them: the driver path takes no such statement."""
    row = {"id": "msg_d", "channel": "sms", "account": "a", "recipient": "r",
           "created_at": AT, "status_at": AT}

    async def batch() -> None:
        def work(session: Session) -> None:
            later(session, outbox.ADD, row)
        await GroupCommit(sqlite_engine).run(work, defers=True)

    asyncio.run(batch())
    with Session(sqlite_engine) as session:
        message = outbox.get(session, "msg_d")
        assert message is not None
        assert (message.status, message.request, message.attempts, message.flagged) == \
            ("queued", {}, 0, False)
