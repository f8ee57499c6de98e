"""Screen-pop customer store: customers, their phones (E.164), accounts, interactions.

Revision ID: 0003_screenpop
Revises: 0002_acd
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_screenpop"
down_revision = "0002_acd"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("company", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_customers_external_id")),
    )
    op.create_table(
        "customer_phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE",
                                name=op.f("fk_customer_phones_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_phones")),
        sa.UniqueConstraint("customer_id", "e164", name="uq_customer_phones_customer_e164"),
    )
    op.create_index(op.f("ix_customer_phones_e164"), "customer_phones", ["e164"], unique=False)
    op.create_table(
        "customer_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("number_key", sa.String(length=64), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE",
                                name=op.f("fk_customer_accounts_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_accounts")),
        sa.UniqueConstraint("number_key", name=op.f("uq_customer_accounts_number_key")),
    )
    op.create_index(op.f("ix_customer_accounts_customer_id"), "customer_accounts", ["customer_id"], unique=False)
    op.create_table(
        "customer_interactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_key", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("ani", sa.String(length=32), nullable=False),
        sa.Column("dnis", sa.String(length=32), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("disposition", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="SET NULL",
                                name=op.f("fk_customer_interactions_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_interactions")),
        sa.UniqueConstraint("call_key", name=op.f("uq_customer_interactions_call_key")),
    )
    op.create_index("ix_customer_interactions_customer_started", "customer_interactions",
                    ["customer_id", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_customer_interactions_customer_started", table_name="customer_interactions")
    op.drop_table("customer_interactions")
    op.drop_index(op.f("ix_customer_accounts_customer_id"), table_name="customer_accounts")
    op.drop_table("customer_accounts")
    op.drop_index(op.f("ix_customer_phones_e164"), table_name="customer_phones")
    op.drop_table("customer_phones")
    op.drop_table("customers")
