"""Sessions (issue 10): policies, devices, token hashes, step-up time, sign-in risk; the
instance's mail settings.

Revision ID: 0009
Revises: 0008

* ``session_policies`` (seed 004), one row per tenant that changed a default; tenant-bound.
* ``trusted_devices`` (seed 004); ``tenant_id`` nullable like ``users``; tenant-bound.
* ``user_sessions`` gains the hashes of its newest tokens, ``authenticated_at`` (step-up),
  the sign-in's risk score, reasons, place and network, and the hash of its revoke link.
  Existing sessions count as authenticated when they were created.
* ``refresh_tokens.generation`` orders a family (existing tokens: 0).
* ``mail_settings``: the SMTP relay, its password encrypted (instance-wide, no RLS).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TENANT_BOUND = ("session_policies", "trusted_devices")


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "session_policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("idle_timeout_minutes", sa.Integer(), nullable=False),
        sa.Column("absolute_timeout_hours", sa.Integer(), nullable=False),
        sa.Column("refresh_token_rotation", sa.Boolean(), nullable=False),
        sa.Column("single_device_only", sa.Boolean(), nullable=False),
        sa.Column("require_reauth_permissions", sa.JSON(), nullable=False),
        sa.Column("reauth_max_age_minutes", sa.Integer(), nullable=False),
        sa.Column("refresh_grace_seconds", sa.Integer(), nullable=False),
        sa.Column("device_trust_days", sa.Integer(), nullable=False),
        sa.Column("risk_notify_at", sa.Integer(), nullable=False),
        sa.Column("risk_mfa_at", sa.Integer(), nullable=False),
        sa.Column("risk_deny_at", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_session_policies_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_policies")),
        sa.UniqueConstraint("tenant_id", name="uq_session_policies_tenant"),
    )  # fmt: skip
    op.create_index(
        op.f("ix_session_policies_tenant_id"), "session_policies", ["tenant_id"], unique=False
    )
    op.create_table(
        "trusted_devices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("device_name", sa.String(length=100), nullable=True),
        sa.Column("device_fingerprint", sa.JSON(), nullable=True),
        sa.Column("is_trusted", sa.Boolean(), nullable=False),
        sa.Column("trust_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ip", sa.String(length=45), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_trusted_devices_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_trusted_devices_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_devices")),
        sa.UniqueConstraint("user_id", "device_id", name="uq_trusted_devices_user"),
    )  # fmt: skip
    op.create_index(
        op.f("ix_trusted_devices_tenant_id"), "trusted_devices", ["tenant_id"], unique=False
    )
    with op.batch_alter_table("user_sessions") as batch:
        batch.add_column(sa.Column("access_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("refresh_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("risk_score", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(
            sa.Column("risk_reasons", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(sa.Column("location", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("network", sa.String(length=49), nullable=True))
        batch.add_column(sa.Column("revoke_token_hash", sa.String(length=64), nullable=True))
        batch.create_index(
            op.f("ix_user_sessions_access_token_hash"), ["access_token_hash"], unique=False
        )
        batch.create_unique_constraint(
            op.f("uq_user_sessions_revoke_token_hash"), ["revoke_token_hash"]
        )
    op.execute("UPDATE user_sessions SET authenticated_at = created_at")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(
            sa.Column("generation", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_table(
        "mail_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("security", sa.String(length=10), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("sender", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_settings")),
    )
    if bind.dialect.name == "postgresql":
        for table in TENANT_BOUND:
            for statement in guards.rls_statements(table):
                bind.exec_driver_sql(statement)


def downgrade() -> None:
    op.drop_table("mail_settings")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("user_sessions") as batch:
        batch.drop_constraint(op.f("uq_user_sessions_revoke_token_hash"), type_="unique")
        batch.drop_index(op.f("ix_user_sessions_access_token_hash"))
        for column in (
            "revoke_token_hash", "network", "location", "risk_reasons", "risk_score",
            "authenticated_at", "refresh_token_hash", "access_token_hash",
        ):  # fmt: skip
            batch.drop_column(column)
    op.drop_index(op.f("ix_trusted_devices_tenant_id"), table_name="trusted_devices")
    op.drop_table("trusted_devices")
    op.drop_index(op.f("ix_session_policies_tenant_id"), table_name="session_policies")
    op.drop_table("session_policies")
