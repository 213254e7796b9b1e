"""Secrets the service makes for itself, made once and shared by every replica."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session

from store._dialect import insert
from store.models import AppSecret


def get_or_create(session: Session, *, name: str, make: Callable[[], str],
                  now: datetime) -> tuple[str, bool]:
    """The stored value of `name`, creating it with `make()` if absent; and whether we made it.

    Two replicas starting together agree: the loser of the insert reads the winner's value.
    """
    candidate = make()
    stmt = insert(session, AppSecret).values(name=name, value=candidate, created_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=["name"]).returning(stmt.table.c.name)
    created = session.exec(stmt).first() is not None  # type: ignore[call-overload]
    row = session.get(AppSecret, name)
    assert row is not None
    return row.value, created
