"""SCIM 2.0 provisioning (issue 13 point 8): tokens, the SCIM view of users, groups, their
members and the group-to-role mapping.

Revision ID: 0013
Revises: 0012

All tenant-bound by RLS (``tenant_id`` NOT NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TENANT_BOUND = ("scim_tokens", "scim_users", "scim_groups", "scim_group_members",
                "scim_role_mappings")  # fmt: skip


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="RESTRICT"),
                     nullable=False, index=True)  # fmt: skip


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "scim_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        *_times(),
        sa.UniqueConstraint("token_hash", name="uq_scim_tokens_token_hash"),
    )
    op.create_table(
        "scim_users",
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
        ),
        _tenant(),
        sa.Column("user_name", sa.String(254), nullable=False),
        sa.Column("user_name_key", sa.String(254), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("manages_role", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        *_times(),
        sa.UniqueConstraint("tenant_id", "user_name_key", name="uq_scim_users_user_name"),
        sa.UniqueConstraint("tenant_id", "external_id", name="uq_scim_users_external_id"),
    )
    op.create_table(
        "scim_groups",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("display_name_key", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        *_times(),
        sa.UniqueConstraint("tenant_id", "display_name_key", name="uq_scim_groups_display_name"),
        sa.UniqueConstraint("tenant_id", "external_id", name="uq_scim_groups_external_id"),
    )
    op.create_table(
        "scim_group_members",
        sa.Column(
            "group_id",
            sa.Uuid(),
            sa.ForeignKey("scim_groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
            index=True,
        ),
        _tenant(),
    )
    op.create_table(
        "scim_role_mappings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("group_name", sa.String(255), nullable=False),
        sa.Column("group_key", sa.String(255), nullable=False),
        sa.Column(
            "role_id", sa.Uuid(), sa.ForeignKey("roles.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        *_times(),
        sa.UniqueConstraint("tenant_id", "group_key", name="uq_scim_role_mappings_group"),
    )
    if bind.dialect.name == "postgresql":
        for table in TENANT_BOUND:
            for statement in guards.rls_statements(table):
                bind.exec_driver_sql(statement)


def downgrade() -> None:
    for table in reversed(TENANT_BOUND):
        op.drop_table(table)
