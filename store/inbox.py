"""The raw archive: webhook bodies, the quarantine, and the keys of applied events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy import insert as sa_insert
from sqlmodel import Session, col, func, select

from store import bulk
from store.db import UTCDateTime
from store.models import InboxBody, QuarantinedBody


def add_body(session: Session, *, vendor: str, route: str, received_at: datetime,
             headers: dict[str, str], body: bytes, dedup_key: str | None,
             event_count: int) -> InboxBody:
    row = InboxBody(vendor=vendor, route=route, received_at=received_at, headers=headers,
                    body=body, dedup_key=dedup_key, event_count=event_count)
    session.add(row)
    session.flush()
    return row


def add_quarantined(session: Session, *, vendor: str, route: str, received_at: datetime,
                    headers: dict[str, str], body: bytes, error: str,
                    detail: str) -> QuarantinedBody:
    row = QuarantinedBody(vendor=vendor, route=route, received_at=received_at, headers=headers,
                          body=body, error=error, detail=detail)
    session.add(row)
    session.flush()
    return row


# Plain SQL both databases speak: SQLAlchemy compiles its dialect ON CONFLICT constructs on
# every call (they are not cacheable), and this runs for every event.
CLAIM = text(
    'INSERT INTO event_keys ("key", inbox_body_id, applied_at) '
    'VALUES (:key, :inbox_body_id, :applied_at) ON CONFLICT ("key") DO NOTHING RETURNING "key"'
).bindparams(bindparam("applied_at", type_=UTCDateTime()))
_BODIES = InboxBody.__table__  # type: ignore[attr-defined]
_ADD_ONE = sa_insert(_BODIES).returning(_BODIES.c.id)
SET_STATES = bulk.from_named(
    "UPDATE inbox_bodies SET state = :state, applied_at = :applied_at, detail = :detail "
    "WHERE id = :id", {"applied_at": UTCDateTime()})
# PostgreSQL: the same rows as arrays, one statement (a pipelined executemany is a Bind and
# an Execute a row, for the server and for psycopg).
_STATE_TYPES = {"state": "text", "applied_at": "timestamptz", "detail": "text", "id": "bigint"}
SET_STATES_PG = (
    "UPDATE inbox_bodies AS b SET state = v.state, applied_at = v.applied_at, "
    "detail = v.detail FROM unnest("
    + ", ".join(f"{bulk.PG_ARRAY}::{_STATE_TYPES[c]}[]" for c in SET_STATES.columns)
    + f") AS v({', '.join(SET_STATES.columns)}) WHERE b.id = v.id")


def claim_key(session: Session, *, key: str, inbox_body_id: int | None, now: datetime) -> bool:
    """True the first time `key` is seen: its event is to be applied. Safe across replicas:
    on PostgreSQL a concurrent claim waits for the first and then finds the key taken."""
    found = session.connection().execute(CLAIM, {"key": key, "inbox_body_id": inbox_body_id,
                                    "applied_at": now})
    return found.first() is not None


_MOVED_COLUMNS = ("id", "vendor", "route", "received_at", "headers", "body", "state",
                  "dedup_key", "event_count", "detail", "applied_at")
# Spooled bodies keep their spool ids (move_in); new ones get theirs from the database.
# Their headers come as JSON text, as the JSON column's converter would make them (json.dumps).
MOVE_IN = bulk.insert_many(_BODIES, _MOVED_COLUMNS, as_given=("headers",))
ADD_PENDING = bulk.insert_many(_BODIES, _MOVED_COLUMNS[1:-1])
# The same rows as one statement of unnested arrays: PostgreSQL's webhook writer
# (store/pg_append.py, asyncpg, outside any transaction: the statement commits itself).
APPEND_PENDING = bulk.Rows(_BODIES, _MOVED_COLUMNS[1:-1], pg_types=(
    "text", "text", "timestamptz", "jsonb", "bytea", "text", "text", "int", "text"))


def add_pending(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store many bodies in one statement (an executemany with no RETURNING, through the
    driver: the cheapest there is), for the applier."""
    ADD_PENDING.run(session.connection(), rows)


PENDING = text(
    "SELECT id, state, vendor, route, received_at, body FROM inbox_bodies "
    "WHERE state = 'pending' AND id > :after ORDER BY id LIMIT :limit"
).columns(received_at=UTCDateTime())
# Every body past the cursor whatever its state (receiver/pending_cursor.py), by the primary
# key; the bytes only of those still to apply.
_FORWARD_COLUMNS = ("SELECT id, state, vendor, route, received_at, "
                    "CASE WHEN state = 'pending' THEN body END AS body FROM inbox_bodies ")
FORWARD = text(_FORWARD_COLUMNS + "WHERE id > :after ORDER BY id LIMIT :limit").columns(
    received_at=UTCDateTime())
BY_IDS = text(_FORWARD_COLUMNS + "WHERE id = ANY(CAST(:ids AS BIGINT[])) ORDER BY id").columns(
    received_at=UTCDateTime())


def pending(session: Session, *, limit: int, after: int = 0) -> list[Any]:
    """The oldest bodies not yet applied, past `after`: (id, state, vendor, route,
    received_at, body) rows."""
    return list(session.connection().execute(PENDING, {"limit": limit, "after": after}).all())


def forward(session: Session, *, after: int, limit: int) -> list[Any]:
    """PostgreSQL: the bodies past `after`, in any state, `body` None unless pending."""
    return list(session.connection().execute(FORWARD, {"after": after, "limit": limit}).all())


def by_ids(session: Session, ids: list[int]) -> list[Any]:
    """PostgreSQL: those of these bodies that are stored, as `forward` reads them."""
    return list(session.connection().execute(BY_IDS, {"ids": ids}).all())


STATES = "SELECT id, state FROM inbox_bodies WHERE "


def still_pending(session: Session, ids: list[int]) -> set[int]:
    """Under the applier's lock (which every applier takes before it writes): which of these
    bodies no other applier has applied since they were read. A read: each body is then
    written once, with its outcome (`set_states`), where a claim that marked them applied
    first wrote every duplicate twice. By id alone, through the primary key: with `state`
    in the condition PostgreSQL may scan every pending body's index entry instead
    (measured: 110 ms a batch of 512 with 50,000 pending, where this takes 1)."""
    connection = session.connection()
    condition, params = bulk.any_of(connection.dialect, "id", ids, "bigint")
    return {id_ for id_, state in bulk.read(connection, STATES + condition, params)
            if state == "pending"}


TAKEN = text("SELECT id, body FROM inbox_bodies WHERE id BETWEEN :low AND :high")


def move_in(session: Session, rows: list[dict[str, Any]]) -> dict[int, int]:
    """Store spooled bodies (store/spool.py) under their spool ids, in the applier's write
    transaction; {spool id: stored id} of those stored now. An id taken by the same body
    means it was moved before (a crash between commit and spool cleanup): left out. One taken
    by another body (stored by some other way) cannot be a move: that body is stored under a
    new id. Headers come as the spool keeps them, JSON text (`Spooled.as_inbox_row`)."""
    if not rows:
        return {}
    connection = session.connection()
    ids = [row["id"] for row in rows]
    taken = dict(connection.execute(TAKEN, {"low": min(ids), "high": max(ids)}).all())
    fresh = [row for row in rows if row["id"] not in taken]
    MOVE_IN.run(connection, fresh)
    stored = {row["id"]: row["id"] for row in fresh}
    for row in rows:
        if row["id"] in taken and taken[row["id"]] != row["body"]:
            stored[row["id"]] = connection.execute(_ADD_ONE, {
                **{k: v for k, v in row.items() if k != "id"},
                "headers": json.loads(row["headers"])}).scalar_one()
    return stored


def max_id(session: Session) -> int:
    return int(session.connection().execute(
        text("SELECT coalesce(max(id), 0) FROM inbox_bodies")).scalar_one())


def count_pending(session: Session) -> int:
    return int(session.connection().execute(
        text("SELECT count(*) FROM inbox_bodies WHERE state = 'pending'")).scalar_one())


def set_states(session: Session,
               states: list[tuple[int, str, datetime | None, str | None]]) -> None:
    """(id, state, applied_at, detail) for many bodies, in one statement."""
    connection = session.connection()
    rows = [{"id": i, "state": st, "applied_at": at, "detail": d} for i, st, at, d in states]
    if connection.dialect.name != "postgresql":
        SET_STATES.run(connection, rows)  # SQLite's executemany: a loop in C
        return
    bulk.write(connection, SET_STATES_PG, SET_STATES.arrays(connection.dialect, rows))


def bodies_page(session: Session, *, after_id: int, states: list[str] | None,
                limit: int) -> list[InboxBody]:
    """Stored bodies after `after_id`, in arrival order."""
    stmt = select(InboxBody).where(col(InboxBody.id) > after_id)
    if states:
        stmt = stmt.where(col(InboxBody.state).in_(states))
    return list(session.exec(stmt.order_by(col(InboxBody.id)).limit(limit)).all())


def unresolved_quarantine(session: Session) -> list[QuarantinedBody]:
    stmt = select(QuarantinedBody).where(col(QuarantinedBody.resolved_at).is_(None))
    return list(session.exec(stmt.order_by(col(QuarantinedBody.id))).all())


def count_bodies(session: Session, *, states: list[str] | None) -> int:
    """How many stored bodies `bodies_page` will go through (for a progress bar)."""
    stmt = select(func.count()).select_from(InboxBody)
    if states:
        stmt = stmt.where(col(InboxBody.state).in_(states))
    return int(session.exec(stmt).one())


def count_unresolved_quarantine(session: Session) -> int:
    stmt = select(func.count()).select_from(QuarantinedBody).where(
        col(QuarantinedBody.resolved_at).is_(None))
    return int(session.exec(stmt).one())
