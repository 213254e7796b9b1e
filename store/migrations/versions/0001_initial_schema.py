"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import store.db

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('accounts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_table('app_secrets',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('created_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('conversations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('customer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('customer_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('last_inbound_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_inbound_message_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('last_outbound_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('opted_out', sa.Boolean(), nullable=False),
    sa.Column('opted_out_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'account', 'customer', name='uq_conversations_key')
    )
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index('ix_conversations_window', ['channel', 'last_inbound_at'], unique=False)

    op.create_table('inbox_bodies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vendor', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('route', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('received_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('dedup_key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('applied_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('inbox_bodies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_bodies_dedup_key'), ['dedup_key'], unique=False)
        batch_op.create_index('ix_inbox_bodies_state_id', ['state', 'id'], unique=False)

    op.create_table('templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vendor_template_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('components', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('synced_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'language', name='uq_templates_name_language')
    )
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_templates_vendor_template_id'), ['vendor_template_id'], unique=False)

    op.create_table('chat_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('vendor_message_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('msg_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sent_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('inbox_body_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ),
    sa.ForeignKeyConstraint(['inbox_body_id'], ['inbox_bodies.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_messages_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index('ix_chat_messages_vendor_id', ['channel', 'vendor_message_id'], unique=False)

    op.create_table('event_keys',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('inbox_body_id', sa.Integer(), nullable=True),
    sa.Column('applied_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_body_id'], ['inbox_bodies.id'], ),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('outbound_messages',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=True),
    sa.Column('route', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('request', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('api_key_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('reply_to', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('vendor_message_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('client_ref', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('fallback_reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('send_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('read_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failed_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rejected_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expired_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failure_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('failure_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('billable', sa.Boolean(), nullable=True),
    sa.Column('conversation_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('cost', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('api_key_id', 'idempotency_key', name='uq_outbound_idempotency')
    )
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_client_ref', ['channel', 'client_ref'], unique=False)
        batch_op.create_index('ix_outbound_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_outbound_vendor_id', ['channel', 'vendor_message_id'], unique=False)

    op.create_table('quarantined_bodies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vendor', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('route', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('received_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('resolved_at', store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('inbox_body_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['inbox_body_id'], ['inbox_bodies.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('quarantined_bodies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantined_bodies_resolved_at'), ['resolved_at'], unique=False)

    op.create_table('status_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('vendor_message_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('client_ref', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('occurred_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('failure_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('failure_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('inbox_body_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['inbox_body_id'], ['inbox_bodies.id'], ),
    sa.ForeignKeyConstraint(['message_id'], ['outbound_messages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.create_index('ix_status_events_client_ref', ['channel', 'client_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_status_events_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_status_events_vendor_id', ['channel', 'vendor_message_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.drop_index('ix_status_events_vendor_id')
        batch_op.drop_index(batch_op.f('ix_status_events_message_id'))
        batch_op.drop_index('ix_status_events_client_ref')

    op.drop_table('status_events')
    with op.batch_alter_table('quarantined_bodies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantined_bodies_resolved_at'))

    op.drop_table('quarantined_bodies')
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_vendor_id')
        batch_op.drop_index('ix_outbound_due')
        batch_op.drop_index('ix_outbound_client_ref')

    op.drop_table('outbound_messages')
    op.drop_table('event_keys')
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_chat_messages_vendor_id')
        batch_op.drop_index(batch_op.f('ix_chat_messages_conversation_id'))

    op.drop_table('chat_messages')
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_templates_vendor_template_id'))

    op.drop_table('templates')
    with op.batch_alter_table('inbox_bodies', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_bodies_state_id')
        batch_op.drop_index(batch_op.f('ix_inbox_bodies_dedup_key'))

    op.drop_table('inbox_bodies')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_window')

    op.drop_table('conversations')
    op.drop_table('app_secrets')
    op.drop_table('api_keys')
