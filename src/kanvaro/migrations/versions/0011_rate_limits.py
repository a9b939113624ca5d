"""Rate limiting (issue 12): rules, violations and blocks, IP lists.

Revision ID: 0011
Revises: 0010

* ``rate_limit_rules`` and ``rate_limit_violations`` (seed 004), with a nullable
  ``tenant_id`` (NULL: the instance's), a method and role on rules, and who lifted a block.
* ``ip_access_rules``: deny / allow / exempt networks, instance-wide or per tenant.
All three are tenant-bound on PostgreSQL (RLS; instance rows are read instance-wide only).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TENANT_BOUND = ("rate_limit_rules", "rate_limit_violations", "ip_access_rules")


def _tenant(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
    ]  # fmt: skip


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "rate_limit_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_pattern", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=False),
        sa.Column("burst_allowance", sa.Integer(), nullable=False),
        sa.Column("per_user", sa.Boolean(), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_tenant("rate_limit_rules"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_rules")),
    )
    op.create_table(
        "rate_limit_violations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("ip_address", sa.String(length=49), nullable=True),
        sa.Column("endpoint", sa.String(length=255), nullable=True),
        sa.Column("limit_name", sa.String(length=120), nullable=False),
        sa.Column("violation_count", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_tenant("rate_limit_violations"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_rate_limit_violations_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_violations")),
    )  # fmt: skip
    op.create_index(
        "idx_ip_blocked", "rate_limit_violations", ["ip_address", "blocked_until"], unique=False
    )
    op.create_index(op.f("ix_rate_limit_violations_user_id"), "rate_limit_violations", ["user_id"])
    op.create_table(
        "ip_access_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("network", sa.String(length=49), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_tenant("ip_access_rules"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_access_rules")),
    )
    for table in TENANT_BOUND:
        op.create_index(op.f(f"ix_{table}_tenant_id"), table, ["tenant_id"], unique=False)
    if bind.dialect.name == "postgresql":
        for table in TENANT_BOUND:
            for statement in guards.rls_statements(table):
                bind.exec_driver_sql(statement)


def downgrade() -> None:
    for table in reversed(TENANT_BOUND):
        op.drop_table(table)
