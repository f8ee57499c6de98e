"""Call recording: an interaction's recording file, its pauses (PCI DSS audit) and when the retention purge
deleted it (centre/recording.py, ``cti recordings purge``).

Revision ID: 0008_call_recording
Revises: 0007_dialer_dnc
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_call_recording"
down_revision = "0007_dialer_dnc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer_interactions") as batch:
        batch.add_column(sa.Column("recording_path", sa.String(length=255), nullable=False, server_default=""))
        batch.add_column(sa.Column("recording_pauses", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("recording_purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_interactions") as batch:
        batch.drop_column("recording_purged_at")
        batch.drop_column("recording_pauses")
        batch.drop_column("recording_path")
