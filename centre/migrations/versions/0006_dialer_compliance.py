"""Dialer: the compliance evidence of each attempt (a person answered, the AMD verdict, seconds of ringing,
the safe-harbour message in time) and an index to read a campaign's attempts by when they ended.

Revision ID: 0006_dialer_compliance
Revises: 0005_dialer_leads
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_dialer_compliance"
down_revision = "0005_dialer_leads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dialer_attempts") as batch:
        batch.add_column(sa.Column("person", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("amd", sa.String(length=16), nullable=False, server_default=""))
        batch.add_column(sa.Column("ring_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("message_in_time", sa.Boolean(), nullable=True))
    op.create_index("ix_dialer_attempts_campaign_ended", "dialer_attempts", ["campaign", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_dialer_attempts_campaign_ended", table_name="dialer_attempts")
    with op.batch_alter_table("dialer_attempts") as batch:
        batch.drop_column("message_in_time")
        batch.drop_column("ring_seconds")
        batch.drop_column("amd")
        batch.drop_column("person")
