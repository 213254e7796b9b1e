"""inbox_bodies: drop the index on dedup_key

Nothing looks bodies up by their first event's key (`event_keys` maps every key to its body),
and each stored body wrote a page of that index at a random place: the applier's batches paid
for it in every commit and checkpoint.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_bodies", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_bodies_dedup_key")


def downgrade() -> None:
    with op.batch_alter_table("inbox_bodies", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_bodies_dedup_key", ["dedup_key"], unique=False)
