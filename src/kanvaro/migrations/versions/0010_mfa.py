"""Multi-factor authentication (issue 11): seed 004's mfa_configurations, mfa_methods and
mfa_policies, plus one-time backup codes and the sign-in's second-step challenges.

Revision ID: 0010
Revises: 0009

All tenant-bound by RLS; ``tenant_id`` is nullable (the instance super admin has MFA too)
except on ``mfa_policies``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TENANT_BOUND = ("mfa_configurations", "mfa_methods", "mfa_backup_codes", "mfa_policies",
                "mfa_challenges")  # fmt: skip


def _tenant(nullable: bool = True) -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="RESTRICT"),
                     nullable=nullable, index=True)  # fmt: skip


def _user(nullable: bool = False) -> sa.Column:
    return sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                     nullable=nullable)  # fmt: skip


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "mfa_configurations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _user(),
        sa.Column("mfa_enabled", sa.Boolean(), nullable=False),
        sa.Column("enforced_by_policy", sa.Boolean(), nullable=False),
        sa.Column("required_since", sa.DateTime(timezone=True), nullable=True),
        *_times(),
        sa.UniqueConstraint("user_id", name="uq_mfa_configurations_user_id"),
    )
    op.create_table(
        "mfa_methods",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _user(),
        sa.Column("method_type", sa.String(20), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("identifier_encrypted", sa.Text(), nullable=True),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("device_name", sa.String(100), nullable=True),
        sa.Column("device_info", sa.JSON(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_step", sa.Integer(), nullable=True),
        sa.Column("credential_id", sa.LargeBinary(), nullable=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=True),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("aaguid", sa.String(36), nullable=True),
        sa.Column("transports", sa.JSON(), nullable=True),
        sa.Column("discoverable", sa.Boolean(), nullable=False),
        sa.Column("user_verified", sa.Boolean(), nullable=False),
        *_times(),
        sa.UniqueConstraint("credential_id", name="uq_mfa_methods_credential_id"),
    )
    op.create_index("ix_mfa_methods_user", "mfa_methods", ["user_id", "method_type"])
    op.create_table(
        "mfa_backup_codes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _user(),
        sa.Column("batch", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_mfa_backup_codes_user", "mfa_backup_codes", ["user_id", "used_at"])
    op.create_table(
        "mfa_policies",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(nullable=False),
        sa.Column("enforce_for_roles", sa.JSON(), nullable=False),
        sa.Column("enforce_for_permissions", sa.JSON(), nullable=False),
        sa.Column("allowed_methods", sa.JSON(), nullable=False),
        sa.Column("backup_codes_count", sa.Integer(), nullable=False),
        sa.Column("totp_window", sa.Integer(), nullable=False),
        sa.Column("phishing_resistant_roles", sa.JSON(), nullable=False),
        sa.Column("require_user_verification", sa.Boolean(), nullable=False),
        sa.Column("allowed_aaguids", sa.JSON(), nullable=False),
        sa.Column("enrollment_grace_days", sa.Integer(), nullable=False),
        sa.Column("trusted_devices_skip_mfa", sa.Boolean(), nullable=False),
        *_times(),
        sa.UniqueConstraint("tenant_id", name="uq_mfa_policies_tenant_id"),
    )
    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _user(nullable=True),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("first_method", sa.String(20), nullable=False),
        sa.Column("client", sa.JSON(), nullable=False),
        sa.Column("code_method_id", sa.Uuid(), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("code_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webauthn_challenge", sa.LargeBinary(), nullable=True),
        *_times(),
    )
    if bind.dialect.name == "postgresql":
        for table in TENANT_BOUND:
            for statement in guards.rls_statements(table):
                bind.exec_driver_sql(statement)


def downgrade() -> None:
    for table in reversed(TENANT_BOUND):
        op.drop_table(table)
