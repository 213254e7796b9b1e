"""Alembic environment: one connection, and on PostgreSQL an advisory lock so that replicas
starting together run the migrations once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

from store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata
MIGRATION_LOCK = 7_361_522_041


def _for_dialect(name: str) -> Callable[..., bool]:
    """Alembic's `include_object`: the models' schema items made on one dialect only
    (`info["only_on"]`, with SQLAlchemy's `ddl_if`, which Alembic does not read) are left
    out of the comparison on any other."""
    def include(obj: Any, _name: str | None, _type: str, reflected: bool,
                _compare_to: Any) -> bool:
        only_on = None if reflected else getattr(obj, "info", {}).get("only_on")
        return only_on is None or only_on == name

    return include


def run() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            is_pg = connection.dialect.name == "postgresql"
            if is_pg:
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
                connection.commit()
            try:
                context.configure(connection=connection, target_metadata=target_metadata,
                                  render_as_batch=not is_pg, compare_type=True,
                                  include_object=_for_dialect(connection.dialect.name))
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                if is_pg:
                    connection.rollback()  # a failed migration leaves its transaction aborted
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"),
                                       {"k": MIGRATION_LOCK})
                    connection.commit()
    finally:
        # Also when a migration (or `alembic check`) raises: no connection is left open.
        engine.dispose()


run()
