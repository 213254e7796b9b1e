"""The events bots hear about: written in the transaction that made them happen, read by a
cursor that never skips or repeats one, and pushed to the bot in order per conversation.

Why the cursor is (txid, id): on PostgreSQL a sequence hands out ids when rows are inserted,
not when their transactions commit, so an event with a lower id can become visible after one
with a higher id. Reading only events of transactions older than every transaction still
running (pg_snapshot_xmin), in (txid, id) order, means anything that appears later sorts
after everything already read. On SQLite writers take turns, so ids already follow commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, text, tuple_, update
from sqlalchemy import insert as sa_insert
from sqlmodel import Session, col, select

from store import bulk
from store.models import Event

CURRENT_TXID = text("pg_current_xact_id()::text::bigint")
VISIBLE_TXID = text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_EVENTS = Event.__table__  # type: ignore[attr-defined]
ADD_PG = sa_insert(_EVENTS).values(txid=CURRENT_TXID)
ADD_SQLITE = sa_insert(_EVENTS).values(txid=0)


def row(*, kind: str, account: str, conversation_key: str, data: dict[str, Any],
        now: datetime, push: bool) -> dict[str, Any]:
    return {"kind": kind, "account": account, "conversation_key": conversation_key,
            "data": data, "created_at": now, "push_state": "pending" if push else "off",
            "push_attempts": 0, "next_push_at": now if push else None}


_COLUMNS = ("kind", "account", "conversation_key", "data", "created_at", "push_state",
            "push_attempts", "next_push_at")
# On PostgreSQL every event of a transaction carries its id, learnt once (then COPY: see
# store/bulk.py); on SQLite, 0.
_ADD_MANY = bulk.insert_many(_EVENTS, ("txid", *_COLUMNS))


def add_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write events (`row`s) in one statement, in order."""
    if len(rows) == 1:
        session.connection().execute(ADD_PG if _is_pg(session) else ADD_SQLITE, rows[0])
        return
    connection = session.connection()
    txid = connection.execute(select(CURRENT_TXID)).scalar_one() if _is_pg(session) else 0
    _ADD_MANY.run(connection, [{**row, "txid": txid} for row in rows])


def after(session: Session, *, cursor: tuple[int, int], accounts: list[str] | None,
          limit: int) -> list[Event]:
    """Events past `cursor`, in cursor order, only from transactions that have finished."""
    stmt = select(Event).where(tuple_(col(Event.txid), col(Event.id)) > tuple_(*cursor))
    if _is_pg(session):
        stmt = stmt.where(col(Event.txid) < VISIBLE_TXID)
    if accounts is not None:
        stmt = stmt.where(col(Event.account).in_(accounts))
    stmt = stmt.order_by(col(Event.txid), col(Event.id)).limit(limit)
    return list(session.exec(stmt).all())


def claim_pushes(session: Session, *, now: datetime, lease_until: datetime,
                 limit: int) -> list[Event]:
    """The next event of each conversation that is due to be pushed, leased to this worker
    until `lease_until` (a worker that dies mid-push leaves it to be retried).

    Only the oldest pending event of a conversation is eligible, so a bot hears each
    conversation's events in order; SKIP LOCKED lets replicas push side by side.
    """
    heads = (
        select(func.min(Event.id))
        .where(Event.push_state == "pending")
        .group_by(col(Event.conversation_key))
    )
    stmt = (
        select(Event)
        .where(col(Event.id).in_(heads), col(Event.next_push_at) <= now)
        .order_by(col(Event.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(session.exec(stmt).all())
    for row in rows:
        row.next_push_at = lease_until
        session.add(row)
    return rows


def get(session: Session, event_id: int) -> Event | None:
    return session.get(Event, event_id, with_for_update=True)


def revive_dead(session: Session, *, now: datetime) -> int:
    """Dead-lettered pushes go back to pending, to be tried again from the start."""
    result = session.exec(  # type: ignore[call-overload]
        update(Event).where(col(Event.push_state) == "dead")
        .values(push_state="pending", push_attempts=0, next_push_at=now, push_error=None)
    )
    return int(result.rowcount or 0)
