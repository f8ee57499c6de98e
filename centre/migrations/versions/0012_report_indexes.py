"""Indexes on the time columns the interval reports and exports select on (``centre.report_store``: each
event by its own time, one local day at a time): without them every day of a report scans the whole table.

Revision ID: 0012_report_indexes
Revises: 0011_interaction_transfer
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0012_report_indexes"
down_revision = "0011_interaction_transfer"
branch_labels = None
depends_on = None

INDEXES = {
    "acd_queue_calls": ("answered_at", "ended_at"),
    "dialer_attempts": ("started_at", "answered_at", "ended_at"),
    "callbacks": ("created_at",),
    "customer_interactions": ("started_at", "ended_at", "transferred_at"),
}


def upgrade() -> None:
    for table, columns in INDEXES.items():
        for column in columns:
            op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def downgrade() -> None:
    for table, columns in INDEXES.items():
        for column in columns:
            op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
