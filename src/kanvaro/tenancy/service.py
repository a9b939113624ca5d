"""Creating tenants with their built-in roles, and reading tenant policies."""

from __future__ import annotations

import re
import unicodedata
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import SYSTEM, AuditContext
from kanvaro.db import switch_tenant
from kanvaro.errors import Conflict
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.security.permissions import PROJECT_SCOPED_ROLES, ROLE_PERMISSIONS, TENANT_ROLES
from kanvaro.tenancy.models import Role, Tenant

ROLE_DESCRIPTIONS = {
    "admin": "Administers the organization: people, projects, finances and settings.",
    "project_manager": "Runs projects: tasks, assignments, budgets and invoices.",
    "team_member": "Works on the tasks of the projects they belong to.",
    "client": "Follows the projects they belong to.",
    "viewer": "Reads the projects they belong to.",
}


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:50] or f"tenant-{uuid.uuid4().hex[:8]}"


async def create_tenant(
    session: AsyncSession, *, name: str, slug: str | None = None, context: AuditContext = SYSTEM
) -> tuple[Tenant, dict[str, Role]]:
    """Create a tenant and its five built-in roles; the session must span all tenants."""
    slug = slug or slugify(name)
    if (await session.execute(select(Tenant.id).where(Tenant.slug == slug))).first():
        raise Conflict(f"A tenant with slug {slug!r} already exists.")
    tenant = Tenant(id=uuid.uuid4(), name=name, slug=slug, status="active", settings={})
    session.add(tenant)
    await session.flush()
    roles = {}
    for role in TENANT_ROLES:
        row = Role(
            id=uuid.uuid4(),
            tenant_id=tenant.id,
            name=role.value,
            description=ROLE_DESCRIPTIONS[role.value],
            is_system=True,
            project_scoped=role in PROJECT_SCOPED_ROLES,
            permissions=sorted(p.value for p in ROLE_PERMISSIONS[role]),
        )
        session.add(row)
        roles[role.value] = row
    await session.flush()
    await audit.record(
        session,
        action="system:tenant:create",
        category="system",
        tenant_id=None,
        context=context,
        resource_type="tenant",
        resource_id=tenant.id,
        changes={"after": {"name": name, "slug": slug}},
    )
    return tenant, roles


def password_policy(tenant: Tenant | None) -> PasswordPolicy:
    settings = (tenant.settings or {}) if tenant else {}
    return PasswordPolicy.from_settings(settings.get("passwordPolicy"))


async def tenant_by_id(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


__all__ = ["create_tenant", "password_policy", "slugify", "switch_tenant", "tenant_by_id"]
