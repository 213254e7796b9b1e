"""The next free send slot of each WeCom staff account, shared by every replica."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from store._dialect import insert
from store.models import AccountPacing


def next_free(session: Session, *, account: str, now: datetime) -> AccountPacing:
    """The account's pacing row, locked until the transaction ends."""
    stmt = insert(session, AccountPacing).values(account=account, next_free_at=now)
    session.exec(stmt.on_conflict_do_nothing(index_elements=["account"]))  # type: ignore[call-overload]
    row = session.exec(select(AccountPacing).where(AccountPacing.account == account)
                       .with_for_update()).one()
    return row
