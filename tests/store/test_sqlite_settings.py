"""What every SQLite connection of the service runs with: the durability the webhooks promise
(WAL, a full fsync at each commit) and temporary data kept in memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from store import conversations, db, migrate
from store.spool import Spool

WAL, FULL, MEMORY = "wal", 2, 2  # PRAGMA synchronous=FULL and temp_store=MEMORY read back as 2


def test_engine_connections_are_durable_and_keep_temporary_data_in_memory(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rw.db'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == WAL
            assert connection.execute(text("PRAGMA synchronous")).scalar() == FULL
            assert connection.execute(text("PRAGMA temp_store")).scalar() == MEMORY
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 16000
    finally:
        engine.dispose()


def test_spool_connection_is_durable_and_keeps_temporary_data_in_memory(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "rw.db-spool")
    try:
        connection = spool._connection()
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == WAL
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == FULL
        assert connection.execute("PRAGMA temp_store").fetchone()[0] == MEMORY
        # Deleted bodies are not overwritten with zeros page by page (they live on in
        # inbox_bodies); 2 is FAST.
        assert connection.execute("PRAGMA secure_delete").fetchone()[0] == 2
    finally:
        spool.close()


def test_window_lookups_read_the_database_file_through_a_memory_map(tmp_path: Path) -> None:
    """The lookups' own read-only connection maps the file (as far as SQLite's build allows);
    test_conversations checks that what it reads is what was last committed."""
    url = f"sqlite:///{tmp_path / 'rw.db'}"
    migrate.upgrade(url)
    engine = db.make_engine(url)
    try:
        assert conversations.window_times(engine, channel="whatsapp", account="91856321412",
                                          customer="91856321432") is None
        reader = conversations._sqlite_reader(engine)
        assert reader is not None
        assert reader.connection.execute("PRAGMA query_only").fetchone()[0] == 1
        # What SQLite granted of READER_MMAP_BYTES: its build's limit (2 GB on Debian's); 0 on
        # a build without memory maps, where the lookups read as before.
        assert reader.connection.execute("PRAGMA mmap_size").fetchone()[0] > 0
    finally:
        engine.dispose()


def test_bytes_and_none_reach_sqlite_as_they_came(tmp_path: Path) -> None:
    """store.db registers adapters for bytes and None (they are cheaper found than missed):
    a body's every byte and a NULL still go in, and come back, as they were."""
    body = bytes(range(256)) + b"\x00\xff tail"
    # The adapters are in effect (store.db, imported above, registers them; without them
    # sqlite3 finds none: "can't adapt") ...
    assert sqlite3.adapt(body) is body
    assert sqlite3.adapt(None) is None
    # ... and a round trip through them changes nothing.
    connection = sqlite3.connect(tmp_path / "raw.db")
    try:
        connection.execute("CREATE TABLE t (body BLOB, detail TEXT)")
        connection.execute("INSERT INTO t VALUES (?, ?)", (body, None))
        assert connection.execute("SELECT body, detail, typeof(body), typeof(detail) FROM t "
                                  "WHERE body = ? AND detail IS NULL", (body,)).fetchall() == [
            (body, None, "blob", "null")]
    finally:
        connection.close()
