"""Per-tenant invoice number counter (issue 7 point 3).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations.guards import rls_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tenants start at 0: the service skips numbers already taken, so their
    # INV-nnnnnn invoices are stepped over in batches on the first automatic create.
    op.create_table(
        "invoice_counters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_invoice_counters_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_counters")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_invoice_counters_tenant_id")),
    )
    op.create_index(op.f("ix_invoice_counters_tenant_id"), "invoice_counters", ["tenant_id"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for statement in rls_statements("invoice_counters"):
            bind.exec_driver_sql(statement)


def downgrade() -> None:
    op.drop_index(op.f("ix_invoice_counters_tenant_id"), table_name="invoice_counters")
    op.drop_table("invoice_counters")
