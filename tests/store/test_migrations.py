"""The migrations, on brand-new databases: they build exactly the models' schema, run twice
harmlessly, and come apart and back together again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers the tables)
from store import databases, migrate

MODEL_TABLES = {table.name for table in SQLModel.metadata.sorted_tables}


def _fresh_sqlite(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "brand-new.db"
    assert not path.exists()
    yield f"sqlite:///{path}"


def _fresh_postgres() -> Iterator[str]:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL server to create a database on")
    url = databases.create_database(base, prefix="replywindow_migrations")
    try:
        yield url
    finally:
        databases.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has touched: no tables, no alembic_version."""
    if request.param == "sqlite":
        yield from _fresh_sqlite(tmp_path)
    else:
        yield from _fresh_postgres()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _version(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrate.config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_an_empty_database_is_not_up_to_date(empty_url: str) -> None:
    with pytest.raises(CommandError, match="not up to date"):
        migrate.check(empty_url)


def test_upgrade_builds_exactly_the_models(empty_url: str) -> None:
    migrate.upgrade(empty_url)

    migrate.check(empty_url)  # raises if the models and the migrations disagree
    assert _tables(empty_url) == MODEL_TABLES | {"alembic_version"}
    assert _version(empty_url) == _head()


def test_upgrade_twice_is_harmless(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)

    migrate.check(empty_url)
    assert _tables(empty_url) == MODEL_TABLES | {"alembic_version"}
    assert _version(empty_url) == _head()


def test_upgrade_keeps_the_data(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO app_secrets (name, value, created_at) "
                              "VALUES ('webhook_token', 'kept', '2026-11-24 10:00:00')"))
        migrate.upgrade(empty_url)
        with engine.connect() as conn:
            value = conn.execute(text("SELECT value FROM app_secrets")).scalar_one()
    finally:
        engine.dispose()
    assert value == "kept"


def test_downgrade_to_base_then_upgrade_again(empty_url: str) -> None:
    migrate.upgrade(empty_url)

    migrate.downgrade(empty_url, "base")
    assert _tables(empty_url) <= {"alembic_version"}
    assert _version(empty_url) is None

    migrate.upgrade(empty_url)
    migrate.check(empty_url)
    assert _tables(empty_url) == MODEL_TABLES | {"alembic_version"}
    assert _version(empty_url) == _head()


def _state_index(url: str) -> str:
    """How the database itself defines the index of bodies by state."""
    engine = create_engine(url)
    sql = ("SELECT indexdef FROM pg_indexes WHERE indexname = :name"
           if engine.dialect.name == "postgresql" else
           "SELECT sql FROM sqlite_master WHERE name = :name")
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(sql), {"name": "ix_inbox_bodies_state_id"}).scalar_one())
    finally:
        engine.dispose()


def test_the_state_index_holds_only_rare_states_on_postgresql(empty_url: str) -> None:
    """Migration 0006: on PostgreSQL, bodies applied or duplicate are not indexed by state
    (each would be a dead entry left behind, then a live one nobody looks up)."""
    migrate.upgrade(empty_url)
    partial = _state_index(empty_url)
    migrate.downgrade(empty_url, "0005")
    whole = _state_index(empty_url)
    migrate.upgrade(empty_url)

    assert "(state, id)" in partial.replace('"', "") and "WHERE" not in whole
    if empty_url.startswith("postgresql"):
        assert "WHERE" in partial and "'applied'" in partial and "'duplicate'" in partial
        assert "'pending'" not in partial and "'failed'" not in partial
    else:
        assert partial == whole
    assert _state_index(empty_url) == partial


def _links(url: str) -> set[tuple[str, str, str]]:
    """(table, column, parent) of every foreign key the database itself has."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        return {(table, key["constrained_columns"][0], key["referred_table"])
                for table in found.get_table_names()
                for key in found.get_foreign_keys(table)}
    finally:
        engine.dispose()


APPLIER_LINKS = {("event_keys", "inbox_body_id", "inbox_bodies"),
                 ("chat_messages", "inbox_body_id", "inbox_bodies"),
                 ("chat_messages", "conversation_id", "conversations"),
                 ("status_events", "inbox_body_id", "inbox_bodies")}


def test_the_appliers_links_are_checked_by_sqlite_only(empty_url: str) -> None:
    """Migration 0007: PostgreSQL does not check the applier's links from what it writes to
    the body and the conversation (a trigger and a row lock each); SQLite still does. The
    other foreign keys stay on both."""
    migrate.upgrade(empty_url)
    now = _links(empty_url)
    migrate.downgrade(empty_url, "0006")
    before = _links(empty_url)
    migrate.upgrade(empty_url)

    assert APPLIER_LINKS <= before
    assert ("status_events", "message_id", "outbound_messages") in now
    assert ("quarantined_bodies", "inbox_body_id", "inbox_bodies") in now
    if empty_url.startswith("postgresql"):
        assert now == before - APPLIER_LINKS
    else:
        assert now == before
    assert _links(empty_url) == now
