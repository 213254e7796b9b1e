"""events: the feed for bots and the push queue

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import store.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("conversation_key", sqlmodel.sql.sqltypes.AutoString(length=160),
                  nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", store.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("push_state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("push_attempts", sa.Integer(), nullable=False),
        sa.Column("next_push_at", store.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pushed_at", store.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("push_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_cursor", ["txid", "id"], unique=False)
        batch_op.create_index("ix_events_push", ["push_state", "next_push_at"], unique=False)
        batch_op.create_index("ix_events_conversation", ["conversation_key", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("events")
