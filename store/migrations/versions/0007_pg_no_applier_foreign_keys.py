"""PostgreSQL: no foreign keys on the applier's links to bodies and conversations

PostgreSQL checks a foreign key with a trigger a row: a query of the parent table through
SPI and a lock on the parent's row (FOR KEY SHARE, written into the row). The applier's rows
made ~2.5 such checks a body of the benchmark's mix (its event keys, chat messages and
statuses, each naming the body it came from, and each chat message its conversation), all of
rows that its own transaction had just read or written. Measured on a drain of 106,000
bodies: PostgreSQL's CPU 54 -> 44 us a body (docs/performance.md, "Eighteenth pass").
Nothing in the service deletes bodies or conversations, so the links cannot dangle but by
hand. SQLite probes the parent's primary key in-process, with no lock: kept there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, parent table): as store/models.py says, at this revision.
LINKS = [
    ("event_keys", "inbox_body_id", "inbox_bodies"),
    ("chat_messages", "inbox_body_id", "inbox_bodies"),
    ("chat_messages", "conversation_id", "conversations"),
    ("status_events", "inbox_body_id", "inbox_bodies"),
]


def _name(table: str, column: str) -> str:
    return f"{table}_{column}_fkey"  # PostgreSQL's own name for the unnamed ones 0001 made


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, _ in LINKS:
        op.drop_constraint(_name(table, column), table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, parent in LINKS:
        op.create_foreign_key(_name(table, column), table, parent, [column], ["id"])
