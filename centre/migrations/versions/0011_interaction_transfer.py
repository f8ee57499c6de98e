"""When an agent's part of a call went on to an outside number (a blind transfer to a number, an attended
transfer completed), written when the part ends, so that the queues' transfers are rebuilt after a restart.

Revision ID: 0011_interaction_transfer
Revises: 0010_interaction_hold
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_interaction_transfer"
down_revision = "0010_interaction_hold"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer_interactions") as batch:
        batch.add_column(sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_interactions") as batch:
        batch.drop_column("transferred_at")
