"""sending: contact opt-outs, fallback re-sends, the first answer for idempotent retries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import store.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("customer", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("changed_at", store.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("customer"),
    )
    # Opt-out belongs to the contact, not to one conversation: it moved to opt_outs.
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("opted_out_at")
        batch_op.drop_column("opted_out")
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fallback_of", sqlmodel.sql.sqltypes.AutoString(length=40),
                                      nullable=True))
        batch_op.add_column(sa.Column("first_answer", JSON, nullable=True))
        batch_op.create_foreign_key("fk_outbound_messages_fallback_of", "outbound_messages",
                                    ["fallback_of"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbound_messages_fallback_of", type_="foreignkey")
        batch_op.drop_column("first_answer")
        batch_op.drop_column("fallback_of")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opted_out", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("opted_out_at", store.db.UTCDateTime(timezone=True),
                                      nullable=True))
    op.drop_table("opt_outs")
