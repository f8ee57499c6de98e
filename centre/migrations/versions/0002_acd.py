"""ACD records: one row per queued call and queue, and the agent state log.

Revision ID: 0002_acd
Revises: 0001_base
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_acd"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acd_queue_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_uid", sa.String(length=200), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("wait", sa.Float(), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("talk", sa.Float(), nullable=False),
        sa.Column("wrapup", sa.Float(), nullable=False),
        sa.Column("offers", sa.Integer(), nullable=False),
        sa.Column("overflow_action", sa.String(length=16), nullable=False),
        sa.Column("overflow_target", sa.String(length=100), nullable=False),
        sa.Column("caller_num", sa.String(length=80), nullable=False),
        sa.Column("dnis", sa.String(length=80), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("ivr_data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_queue_calls")),
        sa.UniqueConstraint("record_uid", name=op.f("uq_acd_queue_calls_record_uid")),
    )
    for column in ("call_id", "queue", "entered_at", "outcome", "agent_id"):
        op.create_index(op.f(f"ix_acd_queue_calls_{column}"), "acd_queue_calls", [column])
    op.create_table(
        "acd_agent_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_uid", sa.String(length=120), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("previous", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_seconds", sa.Float(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_agent_states")),
        sa.UniqueConstraint("record_uid", name=op.f("uq_acd_agent_states_record_uid")),
    )
    for column in ("agent_id", "changed_at"):
        op.create_index(op.f(f"ix_acd_agent_states_{column}"), "acd_agent_states", [column])


def downgrade() -> None:
    for column in ("agent_id", "changed_at"):
        op.drop_index(op.f(f"ix_acd_agent_states_{column}"), table_name="acd_agent_states")
    op.drop_table("acd_agent_states")
    for column in ("call_id", "queue", "entered_at", "outcome", "agent_id"):
        op.drop_index(op.f(f"ix_acd_queue_calls_{column}"), table_name="acd_queue_calls")
    op.drop_table("acd_queue_calls")
