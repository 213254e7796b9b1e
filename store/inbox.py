"""The raw archive: webhook bodies, the quarantine, and the keys of applied events."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, func, select

from store._dialect import insert
from store.models import EventKey, InboxBody, QuarantinedBody


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


def claim_key(session: Session, *, key: str, inbox_body_id: int | None, now: datetime) -> bool:
    """True the first time `key` is seen: its event is to be applied. Safe across replicas:
    on PostgreSQL a concurrent claim waits for the first and then finds the key taken."""
    stmt = insert(session, EventKey).values(key=key, inbox_body_id=inbox_body_id, applied_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=["key"]).returning(stmt.table.c.key)
    return session.exec(stmt).first() is not None  # type: ignore[call-overload]


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
