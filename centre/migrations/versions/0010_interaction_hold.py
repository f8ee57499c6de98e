"""Holds on an agent's part of a call: its total seconds on hold, the number of holds and the longest one,
written when the part ends, so that the hold statistics are rebuilt after a restart (``centre.kpi_restore``).

Revision ID: 0010_interaction_hold
Revises: 0009_supervisor_audit
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_interaction_hold"
down_revision = "0009_supervisor_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer_interactions") as batch:
        batch.add_column(sa.Column("hold_seconds", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("hold_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("hold_max", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("customer_interactions") as batch:
        batch.drop_column("hold_max")
        batch.drop_column("hold_count")
        batch.drop_column("hold_seconds")
