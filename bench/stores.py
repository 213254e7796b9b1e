"""Databases for the runs: fresh SQLite files and fresh PostgreSQL databases (created, migrated
with store.migrate.upgrade, dropped), the million windows, and what a run left in the store."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, make_url, text
from sqlmodel import Session, col, select

from bench.payloads import conversation_rows
from store import databases, db, migrate
from store.models import EventKey, InboxBody, OutboundMessage

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pg_base_url(given: str | None) -> str:
    return (given or os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
            or DEFAULT_PG)


def pg_version(base: str) -> str | None:
    """PostgreSQL's version if it answers at `base`, else None."""
    engine = create_engine(base, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    except Exception:
        return None
    finally:
        engine.dispose()


@contextlib.contextmanager
def pg_database(base: str, purpose: str) -> Iterator[str]:
    """A database of its own for one run, migrated; dropped afterwards."""
    url = databases.create_database(base, prefix=f"replywindow_bench_{purpose}")
    try:
        migrate.upgrade(url)
        yield url
    finally:
        databases.drop_database(url)


def sqlite_database(workdir: Path, name: str) -> str:
    url = f"sqlite:///{workdir / (name + '.db')}"
    migrate.upgrade(url)
    return url


# ---- a million windows ---------------------------------------------------------------------

CONVERSATION_COLUMNS = ("channel", "account", "customer", "customer_name", "last_inbound_at",
                        "last_inbound_message_id", "last_outbound_at", "created_at",
                        "updated_at")


class _Times:
    """Seconds before `now` -> the time as the database's text, remembered (few distinct)."""

    def __init__(self, now: datetime, *, sqlite: bool) -> None:
        # SQLite: how SQLAlchemy stores a DateTime there (UTCDateTime hands it naive UTC).
        self.now = now.astimezone(UTC).replace(tzinfo=None)
        self.suffix = "" if sqlite else "+00"
        self.cache: dict[int | None, str | None] = {None: None}

    def __call__(self, ago: int | None) -> str | None:
        text_ = self.cache.get(ago)
        if text_ is None and ago is not None:
            when = self.now - timedelta(seconds=ago)
            text_ = self.cache[ago] = when.strftime("%Y-%m-%d %H:%M:%S.%f") + self.suffix
        return text_


def load_conversations(url: str, count: int) -> float:
    """Bulk-insert `count` WhatsApp conversations (executemany on SQLite, COPY on
    PostgreSQL); the seconds it took."""
    started = time.perf_counter()
    t = _Times(datetime.now(UTC), sqlite=db.is_sqlite(url))
    rows = ((ch, acc, cust, name, t(li), mid, t(lo), t(c), t(u))
            for ch, acc, cust, name, li, mid, lo, c, u in conversation_rows(count))
    columns = ", ".join(CONVERSATION_COLUMNS)
    if db.is_sqlite(url):
        con = sqlite3.connect(make_url(url).database or "")
        try:
            # Loading, not measuring: no fsync, and room for the indexes in memory.
            con.execute("PRAGMA synchronous=OFF")
            con.execute("PRAGMA cache_size=-524288")
            con.execute("BEGIN")
            marks = ", ".join("?" * len(CONVERSATION_COLUMNS))
            con.executemany(f"INSERT INTO conversations ({columns}) VALUES ({marks})", rows)
            con.execute("COMMIT")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    else:
        engine = create_engine(url)
        try:
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                with cur.copy(f"COPY conversations ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    batch: list[str] = []
                    for row in rows:
                        batch.append("\t".join("\\N" if v is None else v for v in row))
                        if len(batch) >= 10_000:
                            copy.write("\n".join(batch) + "\n")
                            batch.clear()
                    if batch:
                        copy.write("\n".join(batch) + "\n")
                raw.commit()
                # As a table of that age would be: vacuumed (its visibility map set) and
                # analysed, not left for autovacuum to take on in the middle of the run.
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
                cur.execute("VACUUM (ANALYZE) conversations")
            finally:
                raw.close()
        finally:
            engine.dispose()
    return time.perf_counter() - started


# ---- what a run left -------------------------------------------------------------------------

FINAL_STATES = ("applied", "duplicate", "flagged", "stored", "failed")


@dataclass
class Outcome:
    stored: int = 0  # bodies kept
    states: dict[str, int] = field(default_factory=dict)
    applied: int = 0  # bodies whose events were applied
    events: int = 0  # event keys claimed (one per applied event)
    last_applied_s: float | None = None  # seconds from the run's start to the last applied
    settle_s: float = 0.0  # how long after the load the last pending body took
    backlog: int = 0  # bodies still not applied when we stopped waiting
    spooled: int = 0  # of which still in the SQLite spool (not yet in inbox_bodies)
    rows: dict[str, int] = field(default_factory=dict)  # effects, for the record


class Spool:
    """Bodies acknowledged but not yet in `inbox_bodies`: a service on SQLite may keep them
    in a spool file beside the database (`<database>-spool`, table `spool`) until it applies
    them. Counted read-only; 0 while there is no such file."""

    def __init__(self, url: str) -> None:
        self.path = Path(f"{make_url(url).database}-spool") if db.is_sqlite(url) else None
        self._con: sqlite3.Connection | None = None

    def count(self, *, above: int = 0) -> int:
        """Bodies in the spool with an id over `above` (the highest id in `inbox_bodies`:
        replywindow moves a body there under its spool id and deletes it here a little
        later, so one at or below is applied already, not waiting)."""
        if self.path is None or not self.path.exists():
            return 0
        if self._con is None:
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5,
                                        check_same_thread=False)  # one thread at a time
        try:
            return int(self._con.execute("SELECT count(*) FROM spool WHERE id > ?",
                                         (above,)).fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # created, not yet set up
                return 0
            raise

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def inbox_mark(url: str) -> int:
    engine = db.make_engine(url)
    try:
        with Session(engine) as session:
            return int(session.exec(select(func.coalesce(func.max(InboxBody.id), 0))).one())
    finally:
        engine.dispose()


def _since(session: Session, mark: int) -> dict[str, int]:
    rows = session.exec(select(InboxBody.state, func.count()).where(col(InboxBody.id) > mark)
                        .group_by(InboxBody.state)).all()
    return {state: int(n) for state, n in rows}


def _pending(session: Session, mark: int) -> int:
    return int(session.exec(select(func.count()).select_from(InboxBody).where(
        InboxBody.state == "pending", col(InboxBody.id) > mark)).one())


def inbox_outcome(url: str, mark: int, started: float, *, patience: float = 10.0,
                  limit: float = 120.0) -> Outcome:
    """What the bodies after `mark` became. Waits while some are still not applied (a
    service that applies after acknowledging), as long as they keep moving."""
    engine = db.make_engine(url)
    spool = Spool(url)
    load_end = time.time()
    try:
        with Session(engine) as session:
            # While waiting, only what is left to apply is counted (through the index on
            # state and id): counting every body of the run by state, 5 times a second, took
            # CPU from the applier being timed. The whole count once, at the end.
            waiting = (_pending(session, mark), spool.count(above=_moved(session)))
            last_change, previous = time.time(), waiting
            while any(waiting):
                if time.time() - last_change > patience or time.time() - load_end > limit:
                    break
                time.sleep(0.2)
                session.rollback()
                waiting = (_pending(session, mark), spool.count(above=_moved(session)))
                if waiting != previous:
                    last_change, previous = time.time(), waiting
            states, spooled = _since(session, mark), waiting[1]
            out = Outcome(states=states, stored=sum(states.values()) + spooled,
                          applied=states.get("applied", 0), spooled=spooled)
            out.backlog = sum(n for s, n in states.items() if s not in FINAL_STATES) + spooled
            out.settle_s = max(0.0, time.time() - load_end) if out.backlog == 0 else 0.0
            last = session.exec(select(func.max(InboxBody.applied_at)).where(
                col(InboxBody.id) > mark, InboxBody.state == "applied")).one()
            if last is not None:
                out.last_applied_s = last.timestamp() - started
            out.events = int(session.exec(select(func.count()).select_from(EventKey).where(
                col(EventKey.inbox_body_id) > mark)).one())
            for table in ("conversations", "chat_messages", "status_events", "events"):
                out.rows[table] = int(session.exec(  # type: ignore[call-overload]
                    text(f"SELECT count(*) FROM {table}")).one()[0])
            return out
    finally:
        spool.close()
        engine.dispose()


def _moved(session: Session) -> int:
    """The highest id in `inbox_bodies` (see Spool.count)."""
    return int(session.exec(select(func.coalesce(func.max(InboxBody.id), 0))).one())


class BacklogSampler:
    """How many bodies are waiting to be applied (state 'pending', and any still in a SQLite
    spool, see Spool), counted from this process every `interval` seconds while a run goes
    on, on read-only connections: SQLite opened with mode=ro, PostgreSQL in read-only
    transactions.

        with BacklogSampler(url) as backlog:
            ...  # the load
        backlog.samples  # [(seconds since the start, pending bodies), ...]
    """

    SQL = "SELECT count(*) FROM inbox_bodies WHERE state = 'pending'"

    def __init__(self, url: str, *, interval: float = 1.0) -> None:
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, int]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def _count(self) -> Any:
        if db.is_sqlite(self.url):
            path = make_url(self.url).database or ""
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5,
                                  check_same_thread=False)  # one thread at a time
            spool = Spool(self.url)

            def count() -> int:
                moved = con.execute("SELECT coalesce(max(id), 0) FROM inbox_bodies").fetchone()[0]
                return int(con.execute(self.SQL).fetchone()[0]) + spool.count(above=moved)

            def close() -> None:
                con.close()
                spool.close()

            return count, close
        engine = create_engine(self.url, connect_args={
            "options": "-c default_transaction_read_only=on"})

        def count_pg() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text(self.SQL)).scalar_one())

        return count_pg, engine.dispose

    def _sample(self, count: Any) -> None:
        try:
            self.samples.append((time.monotonic() - self._started, count()))
        except Exception:  # a busy moment: the next sample will do
            self.errors += 1

    def _run(self, count: Any) -> None:
        while not self._stop.wait(self.interval):
            self._sample(count)

    def __enter__(self) -> BacklogSampler:
        self._count_fn, self._close = self._count()
        self._started = time.monotonic()
        self._sample(self._count_fn)
        self._thread = threading.Thread(target=self._run, args=(self._count_fn,),
                                        name="bench-backlog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(self._count_fn)
        self._close()

    @property
    def start(self) -> int | None:
        return self.samples[0][1] if self.samples else None

    @property
    def end(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    @property
    def peak(self) -> int | None:
        return max(n for _, n in self.samples) if self.samples else None

    def slope(self) -> float | None:
        """Bodies per second the backlog grew by (least squares over the samples)."""
        if len(self.samples) < 3:
            return None
        n = len(self.samples)
        mean_t = sum(t for t, _ in self.samples) / n
        mean_c = sum(c for _, c in self.samples) / n
        spread = sum((t - mean_t) ** 2 for t, _ in self.samples)
        if spread <= 0:
            return None
        return sum((t - mean_t) * (c - mean_c) for t, c in self.samples) / spread


def naive_mark(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT coalesce(max(id), 0) FROM naive_events").fetchone()[0])
    finally:
        con.close()


def naive_outcome(path: Path, mark: int, started: float) -> Outcome:
    con = sqlite3.connect(path)
    try:
        count, last = con.execute("SELECT count(*), max(received_at) FROM naive_events "
                                  "WHERE id > ?", (mark,)).fetchone()
    finally:
        con.close()
    out = Outcome(stored=int(count), applied=int(count), events=int(count),
                  states={"committed": int(count)})
    if last is not None:
        at = datetime.fromisoformat(str(last))
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        out.last_applied_s = at.timestamp() - started
    return out


def outbound_statuses(url: str, since: float) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(OutboundMessage.status, func.count())
                .where(col(OutboundMessage.created_at) >= datetime.fromtimestamp(since, UTC))
                .group_by(OutboundMessage.status)).all()
            return {status: int(n) for status, n in rows}
    finally:
        engine.dispose()
