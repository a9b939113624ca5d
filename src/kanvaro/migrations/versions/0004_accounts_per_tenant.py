"""Accounts belong to their tenant: users are unique per (tenant, email).

The instance-wide ``uq_users_email`` goes. Members are unique per ``(tenant_id, email)``; the
instance's super admins (``tenant_id IS NULL``, which a unique constraint would not compare)
are unique among themselves through a partial unique index. Existing rows, sessions, audit
chains and row-level security policies are untouched: only constraints change.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_email", type_="unique")
        batch.create_unique_constraint("uq_users_tenant_email", ["tenant_id", "email"])
    op.create_index(
        "uq_users_instance_email",
        "users",
        ["email"],
        unique=True,
        sqlite_where=sa.text("tenant_id IS NULL"),
        postgresql_where=sa.text("tenant_id IS NULL"),
    )


def downgrade() -> None:
    # Refuses (unique violation) when one address now has accounts in several tenants.
    op.drop_index("uq_users_instance_email", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_tenant_email", type_="unique")
        batch.create_unique_constraint("uq_users_email", ["email"])
