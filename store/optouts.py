"""Contacts that opted out of marketing templates and SMS."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlmodel import Session

from store.db import UTCDateTime

# Plain SQL both databases speak, compiled once (a dialect ON CONFLICT construct is compiled
# anew on every call). A choice older than the one recorded changes nothing.
RECORD = text("""
INSERT INTO opt_outs (customer, opted_out, changed_at, source)
VALUES (:customer, :opted_out, :changed_at, :source)
ON CONFLICT (customer) DO UPDATE SET
  opted_out = excluded.opted_out, changed_at = excluded.changed_at, source = excluded.source
WHERE opt_outs.changed_at <= excluded.changed_at
""").bindparams(bindparam("changed_at", type_=UTCDateTime()))


def choice(*, customer: str, opted_out: bool, source: str, at: datetime) -> dict[str, Any]:
    """A contact's choice, as `record_many` takes it."""
    return {"customer": customer, "opted_out": opted_out, "changed_at": at, "source": source}


def record_many(session: Session, choices: list[dict[str, Any]]) -> None:
    """Set each contact's choice, in order, unless a later one is already recorded."""
    if choices:
        session.connection().execute(RECORD, choices)


def record(session: Session, *, customer: str, opted_out: bool, source: str,
           at: datetime) -> None:
    """Set the contact's choice, unless a later one is already recorded."""
    record_many(session, [choice(customer=customer, opted_out=opted_out, source=source, at=at)])
