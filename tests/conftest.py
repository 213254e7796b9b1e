"""Fixtures: a database on SQLite and on PostgreSQL, settings, a clock, the app.

Every test that takes `db_url` (or anything built on it) runs twice: once on a fresh SQLite
file, once on PostgreSQL when TEST_DATABASE_URL is set (skipped with that reason otherwise).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.settings import Settings
from store import db, migrate

TOKEN = "test-webhook-token"
API_KEY = "test-api-key"
DATA = Path(__file__).parent / "data"


class FakeClock:
    """The time, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _pg_admin(base: str) -> Engine:
    return create_engine(make_url(base), isolation_level="AUTOCOMMIT")


def _pg_create_test_db(base: str) -> str:
    """A database of its own for this session: concurrent runs never touch each other's."""
    url = make_url(base)
    name = f"{url.database or 'postgres'}_replywindow_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin(base)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return name


def _pg_drop_test_db(base: str, name: str) -> None:
    """Best effort: a leftover database is harmless, a failing teardown is not."""
    with contextlib.suppress(Exception):
        admin = _pg_admin(base)
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield None
        return
    name = _pg_create_test_db(base)
    try:
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        yield url
    finally:
        _pg_drop_test_db(base, name)


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "replywindow.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_url")
    if url is None:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    _truncate_all(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = db.make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC))


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, webhook_token=TOKEN, api_keys=API_KEY,
                    run_scheduler=False, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def client(settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock)) as client:
        yield client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}
