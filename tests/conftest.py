"""Fixtures: a database on SQLite and on PostgreSQL, settings, a clock, the app.

Every test that takes `db_url` (or anything built on it) runs twice: once on a fresh SQLite
file, once on PostgreSQL when TEST_DATABASE_URL is set (skipped with that reason otherwise).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
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
from store import databases, db, migrate
from tests.settling import SettlingClient

# In-process apps apply on a thread (the clock is the test's, and SettlingClient applies what a
# webhook stored before the test reads it); servers the tests start run the default, a process.
os.environ["REPLYWINDOW_APPLIER"] = "thread"

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


def _pg_create_test_db(base: str) -> str:
    """A database of its own for this session: concurrent runs never touch each other's."""
    prefix = f"{make_url(base).database or 'postgres'}_replywindow"
    return str(make_url(databases.create_database(base, prefix=prefix)).database)


def _pg_drop_test_db(base: str, name: str) -> None:
    """Best effort: a leftover database is harmless, a failing teardown is not."""
    with contextlib.suppress(Exception):
        databases.drop_database(
            make_url(base).set(database=name).render_as_string(hide_password=False))


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


def postgres_only(pg_url: str | None) -> str:
    """For a test module's own `db_url` fixture: the PostgreSQL half of the one below."""
    if pg_url is None:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    _truncate_all(pg_url)
    return pg_url


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
    with SettlingClient(create_app(settings, clock=clock)) as client:
        yield client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


# -- no secret and no whole phone number in any log record, in any test ---------------------

LOG_SECRETS = (TOKEN, API_KEY, "replywindowTestVectorKey32bytes!",
               "91856321412", "91856321432", "91856321413")
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=]{8,}")
# The tests' own HTTP client (starlette's TestClient) logs the URLs it calls; not the service.
_NOT_THE_SERVICE = ("httpx2",)


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _leaks(records: list[logging.LogRecord]) -> list[str]:
    found = []
    for record in records:
        if record.name.startswith(_NOT_THE_SERVICE):
            continue
        try:
            texts = [record.getMessage()]
        except Exception:  # a record whose arguments don't fit its message: check both
            texts = [str(record.msg), repr(record.args)]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
        texts += [t for t in (record.exc_text, record.stack_info) if t]
        for text_ in dict.fromkeys(texts):  # exc_text is often formatException again
            for secret in LOG_SECRETS:
                if secret in text_:
                    found.append(f"{record.name} {record.levelname}: {secret!r} in {text_[:300]!r}")
            if match := _WHSEC.search(text_):
                found.append(f"{record.name} {record.levelname}: {match.group(0)[:10]}… in "
                             f"{text_[:300]!r}")
    return found


@pytest.fixture(scope="session", autouse=True)
def _log_recorder() -> Iterator[_Recorder]:
    """Every log record of the session, at the levels the service logs at in production (INFO;
    our own packages at DEBUG): checked after each test, and what fixtures logged at the end."""
    recorder = _Recorder()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "receiver", "sender",
                                                               "store", "httpx")}
    root.addHandler(recorder)
    root.setLevel(logging.INFO)
    for name in ("receiver", "sender", "store"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # as `replywindow serve` sets it
    try:
        yield recorder
        _check_logged(recorder, "at the end of the session")
    finally:
        root.removeHandler(recorder)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _check_logged(recorder: _Recorder, when: str) -> None:
    leaks = _leaks(recorder.records)
    recorder.records.clear()
    assert leaks == [], f"a secret or a phone number was logged {when}:\n" + "\n".join(leaks)


@pytest.fixture(autouse=True)
def _no_secret_logged(_log_recorder: _Recorder) -> Iterator[None]:
    _check_logged(_log_recorder, "before this test (by a fixture's teardown?)")
    yield
    _check_logged(_log_recorder, "in this test")
