"""The tenant a console page belongs to: the one in its address, which must be the signed-in
person's own (a session of one tenant never shows another tenant's pages)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting
from kanvaro.errors import NotFound
from kanvaro.tenancy.models import Tenant


async def active_tenant(db: AsyncSession, slug: str) -> Tenant | None:
    tenant = (
        await db.execute(select(Tenant).where(Tenant.slug == slug.lower()))
    ).scalar_one_or_none()
    return tenant if tenant is not None and tenant.status == "active" else None


async def page_tenant(ctx: Acting, slug: str) -> Tenant:
    """The signed-in person's tenant, when the address names it; 404 otherwise (the same as an
    unknown tenant, so a page address reveals nothing about other tenants)."""
    tenant_id = ctx.principal.tenant_id if ctx.principal else None
    tenant = await ctx.db.get(Tenant, tenant_id) if tenant_id else None
    if tenant is None or tenant.slug != slug.lower():
        raise NotFound("This page belongs to an organization you are not signed in to.")
    return tenant
