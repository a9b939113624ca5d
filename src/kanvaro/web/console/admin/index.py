"""``/t/{slug}/admin``: the tenant's administration, one link per section the person may use.

Each section's pages declare the permission of the API routes behind them; this index only
lists the ones the signed-in person's permissions open (and is refused to someone who holds
none of them).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, require_any
from kanvaro.web.console.admin.common import ANY_ADMIN, Slug, page, sections_for
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Admin = Annotated[Ctx, require_any(*ANY_ADMIN)]


@router.get("/t/{slug}/admin")
async def admin_index(slug: Slug, ctx: Admin, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    return page(request, "admin/index.html", ctx, tenant=tenant, sections=sections_for(ctx.me()))
