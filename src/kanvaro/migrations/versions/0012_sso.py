"""Single sign-on (issue 13): seed 004's sso_providers and sso_sessions, plus the links of an
IdP subject to a user (sso_identities), the tenant's SSO policy, the sign-ins in flight
(sso_requests: OIDC state, SAML AuthnRequest) and assertion ids already seen (replay).

Revision ID: 0012
Revises: 0011

All tenant-bound by RLS. Branches from 0010 beside the other issue-13 migrations; the chain
is made linear when they are merged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("sso_providers", "sso_identities", "sso_sessions", "sso_policies", "sso_requests",
          "sso_seen_assertions")  # fmt: skip


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="RESTRICT"),
                     nullable=False, index=True)  # fmt: skip


def _fk(name: str, target: str, *, nullable: bool = False, index: bool = False) -> sa.Column:
    return sa.Column(name, sa.Uuid(), sa.ForeignKey(target, ondelete="CASCADE"),
                     nullable=nullable, index=index)  # fmt: skip


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _versioned() -> list[sa.Column]:
    return [
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        *_times(),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "sso_providers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("provider_type", sa.String(20), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets_encrypted", sa.Text(), nullable=True),
        *_versioned(),
        sa.UniqueConstraint("tenant_id", "name", name="uq_sso_providers_tenant_name"),
    )
    op.create_table(
        "sso_identities",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _fk("provider_id", "sso_providers.id", index=True),
        sa.Column("subject", sa.String(255), nullable=False),
        _fk("user_id", "users.id", index=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        *_times(),
        sa.UniqueConstraint("provider_id", "subject", name="uq_sso_identities_provider_subject"),
    )
    op.create_table(
        "sso_sessions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _fk("user_id", "users.id", index=True),
        _fk("provider_id", "sso_providers.id"),
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        _fk("user_session_id", "user_sessions.id", nullable=True, index=True),
        sa.Column("mfa_challenge_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index("ix_sso_sessions_provider_session", "provider_id", "session_id"),
    )
    op.create_table(
        "sso_policies",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("allowed_domains", sa.JSON(), nullable=False),
        sa.Column("verified_domains", sa.JSON(), nullable=False),
        sa.Column("link_existing_accounts", sa.Boolean(), nullable=False),
        sa.Column("require_sso", sa.Boolean(), nullable=False),
        sa.Column("break_glass_user_ids", sa.JSON(), nullable=False),
        *_versioned(),
        sa.UniqueConstraint("tenant_id", name="uq_sso_policies_tenant_id"),
    )
    op.create_table(
        "sso_requests",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _fk("provider_id", "sso_providers.id"),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("data_encrypted", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("provider_id", "request_id", name="uq_sso_requests_id"),
    )
    op.create_table(
        "sso_seen_assertions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        _fk("provider_id", "sso_providers.id"),
        sa.Column("assertion_id", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.UniqueConstraint("provider_id", "assertion_id", name="uq_sso_seen_assertions"),
    )
    if bind.dialect.name == "postgresql":
        for table in TABLES:
            for statement in guards.rls_statements(table):
                bind.exec_driver_sql(statement)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
