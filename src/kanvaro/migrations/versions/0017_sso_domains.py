"""SSO domains verified by DNS (issue 13 point 1): ``sso_domains`` replaces the declared
``sso_policies.verified_domains``.

Revision ID: 0017
Revises: 0016

Tenant-bound by RLS. A partial unique index lets one tenant at most hold a domain verified.
A declared domain was never proven: each becomes a pending claim of its tenant (with a fresh
token, to be verified by DNS) and joins the policy's ``allowedDomains``, so SSO sign-in keeps
accepting its addresses while home-realm discovery waits for the proof.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime

import idna
import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

VERIFIED = sa.text("status = 'verified'")


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value or "[]")
    return [str(v) for v in value or ()] if isinstance(value, list) else []


def _ascii(domain: str) -> str | None:
    text = domain.strip().lstrip("@").rstrip(".")
    try:
        encoded = idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
    return encoded if "." in encoded and len(encoded) <= 253 else None


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "sso_domains",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Uuid(),
            sa.ForeignKey("tenants.id", ondelete="RESTRICT"),
            nullable=False,
            index=True,
        ),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "domain", name="uq_sso_domains_tenant_domain"),
    )
    op.create_index(
        "uq_sso_domains_verified_domain",
        "sso_domains",
        ["domain"],
        unique=True,
        sqlite_where=VERIFIED,
        postgresql_where=VERIFIED,
    )
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("SELECT set_config('app.all_tenants', 'on', true)")
    policies = sa.table(
        "sso_policies",
        sa.column("id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("allowed_domains", sa.JSON()),
        sa.column("verified_domains", sa.JSON()),
    )
    domains = sa.table(
        "sso_domains",
        sa.column("id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("domain", sa.String()),
        sa.column("token", sa.String()),
        sa.column("status", sa.String()),
        sa.column("failures", sa.Integer()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(
            policies.c.id,
            policies.c.tenant_id,
            policies.c.allowed_domains,
            policies.c.verified_domains,
        )
    ).all()
    for row in rows:
        declared = _as_list(row.verified_domains)
        if not declared:
            continue
        allowed = _as_list(row.allowed_domains)
        bind.execute(
            policies.update()
            .where(policies.c.id == row.id)
            .values(allowed_domains=sorted({*allowed, *declared}))
        )
        claims = sorted({d for d in map(_ascii, declared) if d})
        for domain in claims:
            bind.execute(
                domains.insert().values(
                    id=uuid.uuid4(),
                    tenant_id=row.tenant_id,
                    domain=domain,
                    token=secrets.token_urlsafe(24),
                    status="pending",
                    failures=0,
                    created_at=now,
                    updated_at=now,
                )
            )
    with op.batch_alter_table("sso_policies") as batch:
        batch.drop_column("verified_domains")
    if bind.dialect.name == "postgresql":
        for statement in guards.rls_statements("sso_domains"):
            bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("sso_policies") as batch:
        batch.add_column(
            sa.Column("verified_domains", sa.JSON(), nullable=False, server_default="[]")
        )
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("SELECT set_config('app.all_tenants', 'on', true)")
    policies = sa.table(
        "sso_policies",
        sa.column("tenant_id", sa.Uuid()),
        sa.column("verified_domains", sa.JSON()),
    )
    found = sa.table(
        "sso_domains", sa.column("tenant_id", sa.Uuid()), sa.column("domain", sa.String())
    )
    by_tenant: dict[uuid.UUID, list[str]] = {}
    for tenant_id, domain in bind.execute(
        sa.select(found.c.tenant_id, found.c.domain).where(VERIFIED)
    ):
        by_tenant.setdefault(tenant_id, []).append(domain)
    for tenant_id, names in by_tenant.items():
        bind.execute(
            policies.update()
            .where(policies.c.tenant_id == tenant_id)
            .values(verified_domains=sorted(names))
        )
    op.drop_table("sso_domains")
