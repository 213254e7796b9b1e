"""The SQLite spool: bodies acknowledged into it are moved into inbox_bodies and applied once,
whatever happens between the move and the spool's cleanup."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from receiver.applier import BATCH, Drainer
from receiver.ingest import Ingestor, Received, _row
from receiver.parsers import parsers
from receiver.settings import Settings
from store import inbox, migrate
from store.models import ChatMessage, EventKey, InboxBody
from store.spool import Spool, open_for, path_for
from tests.conftest import DATA, TOKEN

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only (the spool is SQLite's); conftest's `engine` opens it."""
    url = f"sqlite:///{tmp_path / 'rw.db'}"
    migrate.upgrade(url)
    return url


def _settings(url: str) -> Settings:
    return Settings(database_url=url, webhook_token=TOKEN, _env_file=None)  # type: ignore[call-arg]


def _received(settings: Settings, n: int) -> Received:
    raw = (DATA / "webhooks" / "itnio_wa_uplink_text.json").read_bytes().replace(
        b"wamid.HBgMOTE4NTYzMjE0MzIVAgASGBQzQUJD", f"wamid.{n}".encode())
    events = parsers(settings)[("itnio", "whatsapp")](raw)
    return Received("itnio", "whatsapp", NOW, {"content-type": "application/json"}, raw,
                    events=events)


def _uplink(settings: Settings, n: int) -> dict[str, object]:
    return _row(_received(settings, n))


def _count(engine: Engine, model: object) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())  # type: ignore[arg-type]


class CrashBeforeCleanup(Spool):
    """A spool whose cleanup never happens, as if the process died right after the commit."""

    def delete_through(self, through_id: int) -> None:
        raise KeyboardInterrupt


def test_a_body_moved_again_after_a_crash_is_neither_stored_nor_applied_twice(
        db_url: str, engine: Engine) -> None:
    settings = _settings(db_url)
    path = path_for(db_url)
    assert path is not None
    CrashBeforeCleanup(path).append([_uplink(settings, n) for n in range(3)])

    with pytest.raises(KeyboardInterrupt):
        Drainer(engine, settings, lambda: NOW, spool=CrashBeforeCleanup(path)).drain()
    assert _count(engine, ChatMessage) == 3  # committed; the spool still holds all three

    spool = Spool(path)
    assert spool.backlog()[0] == 3
    with Session(engine) as session:  # moved (under their spool ids): none waits
        assert spool.backlog(above=inbox.max_id(session)) == (0, None)
    assert Drainer(engine, settings, lambda: NOW, spool=spool).drain() == 3  # after restart

    assert spool.backlog() == (0, None)
    assert (_count(engine, InboxBody), _count(engine, ChatMessage), _count(engine, EventKey)) \
        == (3, 3, 3)


def test_a_busy_drain_lets_go_of_moved_bodies_as_its_clock_says(db_url: str,
                                                                engine: Engine) -> None:
    """While batches keep coming, what was moved is deleted from the spool every
    FORGET_SECONDS of the drainer's own clock (here each batch takes a second), not only once
    the drain is idle."""
    settings = _settings(db_url)
    spool = open_for(db_url, above=0)
    assert spool is not None
    spool.append([_uplink(settings, n) for n in range(3 * BATCH)])
    seconds = iter(range(1_000))
    let_go: list[int] = []

    def on_moved(through_id: int) -> None:
        let_go.append(through_id)
        spool.delete_through(through_id)

    drainer = Drainer(engine, settings, lambda: NOW, spool=spool, on_moved=on_moved,
                      ticks=lambda: float(next(seconds)))

    assert drainer.drain() == 3 * BATCH
    assert let_go == [BATCH, 2 * BATCH, 3 * BATCH]
    assert spool.backlog() == (0, None)


def test_spool_ids_start_above_every_stored_body_and_a_taken_id_is_not_lost(
        db_url: str, engine: Engine) -> None:
    settings = _settings(db_url)
    with Session(engine) as session, session.begin():
        session.add(InboxBody(id=7, vendor="itnio", route="whatsapp", received_at=NOW,
                              body=b"{}", state="stored"))
    spool = open_for(db_url, above=7)
    assert spool is not None
    spool.append([_uplink(settings, 1)])
    assert [row.id for row in spool.oldest_after(0, 10)] == [8]

    with Session(engine) as session, session.begin():  # stored some other way, under id 8
        session.add(InboxBody(id=8, vendor="itnio", route="sms", received_at=NOW,
                              body=b"{\"other\": 1}", state="stored"))
    assert Drainer(engine, settings, lambda: NOW, spool=spool).drain() == 1

    with Session(engine) as session:
        bodies = session.exec(select(InboxBody.id, InboxBody.state).order_by(InboxBody.id)).all()
    assert [tuple(b) for b in bodies] == [(7, "stored"), (8, "stored"), (9, "applied")]
    assert _count(engine, ChatMessage) == 1


def test_postgresql_and_memory_have_no_spool() -> None:
    assert path_for("postgresql+psycopg://u@h/db") is None
    assert path_for("sqlite://") is None
    assert path_for("sqlite:///:memory:") is None
    assert path_for("sqlite:////var/lib/rw.db") == Path("/var/lib/rw.db-spool")


def test_an_append_over_one_statements_rows_is_stored_whole_and_in_order(db_url: str) -> None:
    settings = _settings(db_url)
    spool = Spool(path_for(db_url))  # type: ignore[arg-type]
    rows = [_uplink(settings, n) for n in range(1_100)]  # three statements' worth
    spool.append(rows[:1])
    spool.append(rows[1:])

    stored = spool.oldest_after(0, 2_000)
    assert [s.body for s in stored] == [r["body"] for r in rows]
    assert [s.id for s in stored] == sorted(s.id for s in stored)
    assert json.loads(stored[5].headers_json) == {"content-type": "application/json"}
    assert stored[5].received_at == NOW
    spool.close()


def test_in_the_server_only_the_acknowledging_writer_deletes_from_the_spool(
        db_url: str, engine: Engine) -> None:
    """The applier reports what it moved and deletes nothing (so it never waits for the
    writer's lock, nor the writer for its); the writer deletes through the id reported once
    its next batch is answered, and on stopping."""
    settings = _settings(db_url)
    spool = Spool(path_for(db_url))  # type: ignore[arg-type]
    spool.append([_uplink(settings, n) for n in range(3)])
    moved: list[int] = []
    drainer = Drainer(engine, settings, lambda: NOW, spool=spool, on_moved=moved.append)
    assert drainer.drain() == 3
    first = [row.id for row in spool.oldest_after(0, 10)]
    assert len(first) == 3 and moved == [first[-1]]  # moved and reported, still spooled
    assert _count(engine, ChatMessage) == 3

    async def acknowledge() -> tuple[list[int], list[int]]:
        ingestor = Ingestor(engine, spool=spool)
        await ingestor.start()
        ingestor.moved(moved[-1])
        await ingestor.submit(_received(settings, 3), timeout=5)  # deletes once answered
        await ingestor.submit(_received(settings, 4), timeout=5)  # so this comes after
        after_batches = [row.id for row in spool.oldest_after(0, 10)]
        assert drainer.drain() == 2
        ingestor.moved(moved[-1])
        await ingestor.stop()
        return after_batches, [row.id for row in spool.oldest_after(0, 10)]

    after_batches, after_stop = asyncio.run(acknowledge())
    assert after_batches == [first[-1] + 1, first[-1] + 2]  # the moved three are gone
    assert moved == [first[-1], first[-1] + 2] and after_stop == []
    assert spool.backlog() == (0, None)
    assert _count(engine, ChatMessage) == 5
    spool.close()


def test_a_moved_body_that_is_not_applied_is_stored_as_what_it_came_to(
        db_url: str, engine: Engine) -> None:
    """Moved bodies go in as applied; one that no longer parses, and one the vendor sent
    twice, end as `failed` (with why, and no applied_at) and `duplicate`."""
    settings = _settings(db_url)
    spool = open_for(db_url, above=0)
    assert spool is not None
    unreadable = Received("itnio", "whatsapp", NOW, {}, b'{"messageId": ', events=[])
    spool.append([_uplink(settings, 1), _row(unreadable), _uplink(settings, 1),
                  _uplink(settings, 2)])

    assert Drainer(engine, settings, lambda: NOW, spool=spool).drain() == 4

    with Session(engine) as session:
        bodies = session.exec(select(InboxBody).order_by(InboxBody.id)).all()
    assert [(b.state, b.applied_at) for b in bodies] == [
        ("applied", NOW), ("failed", None), ("duplicate", NOW), ("applied", NOW)]
    assert bodies[1].detail and "JSON" in bodies[1].detail
    assert _count(engine, ChatMessage) == 2
