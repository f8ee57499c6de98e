"""Supervisor actions' audit trail (centre/audit.py): who, what (action and parameters), on whom, when, and
the result (ok, or refused with the reason). Append-only from the console.

Revision ID: 0009_supervisor_audit
Revises: 0008_call_recording
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_supervisor_audit"
down_revision = "0008_call_recording"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "supervisor_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supervisor_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supervisor_audit")),
    )
    op.create_index(op.f("ix_supervisor_audit_at"), "supervisor_audit", ["at"])
    op.create_index(op.f("ix_supervisor_audit_supervisor_id"), "supervisor_audit", ["supervisor_id"])
    op.create_index(op.f("ix_supervisor_audit_target"), "supervisor_audit", ["target"])


def downgrade() -> None:
    op.drop_index(op.f("ix_supervisor_audit_target"), table_name="supervisor_audit")
    op.drop_index(op.f("ix_supervisor_audit_supervisor_id"), table_name="supervisor_audit")
    op.drop_index(op.f("ix_supervisor_audit_at"), table_name="supervisor_audit")
    op.drop_table("supervisor_audit")
