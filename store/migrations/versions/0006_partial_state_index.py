"""inbox_bodies, PostgreSQL: index by state only the bodies in a rare state

PostgreSQL writes a new index entry for every new version of a row. Each body is stored
`pending` and then updated once with its outcome, nearly always `applied` or `duplicate`:
the (state, id) index took an entry for that too, and grew with every body kept, while the
applier only ever looks for `pending` bodies and /metrics counts `pending` and `failed`
ones. A partial index keeps only bodies in the other states: one index write less a body,
and an index the size of the backlog. SQLite updates entries in place: unchanged there.

The index is rebuilt under a lock that holds back webhook writes while it builds: on a
table of millions of bodies, run the migration at a quiet moment.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COMMON_STATES = "('applied', 'duplicate')"  # as store/models.py says, at this revision


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_inbox_bodies_state_id", table_name="inbox_bodies")
    op.create_index("ix_inbox_bodies_state_id", "inbox_bodies", ["state", "id"],
                    postgresql_where=f"state NOT IN {COMMON_STATES}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_inbox_bodies_state_id", table_name="inbox_bodies")
    op.create_index("ix_inbox_bodies_state_id", "inbox_bodies", ["state", "id"])
