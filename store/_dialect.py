"""The INSERT ... ON CONFLICT construct of whichever database the session is on."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session


def insert(session: Session, model: Any) -> Any:
    """A Core insert on the model's table. To learn whether ON CONFLICT DO NOTHING inserted,
    add RETURNING and look for a row: rowcount is -1 here on PostgreSQL (psycopg)."""
    table = getattr(model, "__table__", model)
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
