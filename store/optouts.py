"""Contacts that opted out of marketing templates and SMS."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from store._dialect import insert
from store.models import OptOut


def record(session: Session, *, customer: str, opted_out: bool, source: str,
           at: datetime) -> None:
    """Set the contact's choice, unless a later one is already recorded."""
    table = OptOut.__table__  # type: ignore[attr-defined]
    stmt = insert(session, table).values(customer=customer, opted_out=opted_out,
                                         changed_at=at, source=source)
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer"],
        set_={"opted_out": stmt.excluded.opted_out, "changed_at": stmt.excluded.changed_at,
              "source": stmt.excluded.source},
        where=table.c.changed_at <= stmt.excluded.changed_at,
    )
    session.exec(stmt)  # type: ignore[call-overload]
