"""Dialer: campaign leads and their attempts.

Revision ID: 0005_dialer_leads
Revises: 0004_dialer
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_dialer_leads"
down_revision = "0004_dialer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dialer_leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("unknowns", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("last_result", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dialer_leads")),
        sa.UniqueConstraint("campaign", "lead_id", name="uq_dialer_leads_campaign_lead"),
    )
    op.create_index("ix_dialer_leads_campaign_status", "dialer_leads", ["campaign", "status"])
    op.create_table(
        "dialer_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("agent_wait", sa.Float(), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dialer_attempts")),
        sa.UniqueConstraint("ref", name=op.f("uq_dialer_attempts_ref")),
    )
    op.create_index("ix_dialer_attempts_campaign_lead", "dialer_attempts", ["campaign", "lead_id"])


def downgrade() -> None:
    op.drop_index("ix_dialer_attempts_campaign_lead", table_name="dialer_attempts")
    op.drop_table("dialer_attempts")
    op.drop_index("ix_dialer_leads_campaign_status", table_name="dialer_leads")
    op.drop_table("dialer_leads")
