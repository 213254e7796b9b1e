"""Alembic environment: one connection, and on PostgreSQL an advisory lock so that replicas
starting together run the migrations once."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

from store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata
MIGRATION_LOCK = 7_361_522_041


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
                                  render_as_batch=not is_pg, compare_type=True)
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
