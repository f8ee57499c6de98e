"""Dialer: the do-not-call list; a lead's time zones (several for a number spanning zones); look-up of a
campaign's leads by number (duplicate filtering at import); the campaign dialling a scheduled callback.

Revision ID: 0007_dialer_dnc
Revises: 0005_dialer_leads (re-chain onto 0006_dialer_compliance when that revision lands)
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_dialer_dnc"
down_revision = "0006_dialer_compliance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dialer_dnc",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=120), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dialer_dnc")),
        sa.UniqueConstraint("number", name=op.f("uq_dialer_dnc_number")),
    )
    with op.batch_alter_table("dialer_leads") as batch:
        batch.alter_column("timezone", type_=sa.Text(), existing_type=sa.String(length=64), existing_nullable=False)
    op.create_index("ix_dialer_leads_campaign_number", "dialer_leads", ["campaign", "number"])
    op.add_column("callbacks", sa.Column("campaign", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("campaign")
    op.drop_index("ix_dialer_leads_campaign_number", table_name="dialer_leads")
    with op.batch_alter_table("dialer_leads") as batch:
        batch.alter_column("timezone", type_=sa.String(length=64), existing_type=sa.Text(), existing_nullable=False)
    op.drop_table("dialer_dnc")
