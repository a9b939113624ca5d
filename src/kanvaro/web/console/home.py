"""The console's front door (``/``) and a tenant's home page (``/t/{slug}/``)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import Ctx, authenticated, public, public_db
from kanvaro.tenancy.models import Tenant
from kanvaro.web.console.routing import SLUG_PATTERN, console_router, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import page_tenant
from kanvaro.work.common import visible_projects
from kanvaro.work.models import Project, Task

router = console_router()
_SLUG = re.compile(r"[a-z0-9-]{1,63}")

Slug = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG_PATTERN)]
PublicDb = Annotated[AsyncSession, public_db()]
Member = Annotated[Ctx, authenticated()]


@router.get("/")
async def front_door(request: Request, db: PublicDb) -> Response:
    """An instance with one organization sends everyone to it; otherwise people name theirs
    (a list of every tenant here would tell strangers who the customers are)."""
    active = (
        (await db.execute(select(Tenant.slug).where(Tenant.status == "active").limit(2)))
        .scalars()
        .all()
    )
    if len(active) == 1:
        return RedirectResponse(tenant_path(active[0]), status_code=303)
    wanted = (request.query_params.get("organization") or "").strip().lower()
    if wanted and _SLUG.fullmatch(wanted):
        return RedirectResponse(tenant_path(wanted, "/sign-in"), status_code=303)
    return render(request, "front_door.html")


@router.get("/t/{slug}/")
async def tenant_home(slug: Slug, ctx: Member, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    projects = (
        (
            await ctx.db.execute(
                visible_projects(ctx, select(Project), Project.id).order_by(Project.name).limit(20)
            )
        )
        .scalars()
        .all()
    )
    open_tasks = {}
    if projects:
        counts = await ctx.db.execute(
            select(Task.project_id, func.count())
            .where(Task.project_id.in_([p.id for p in projects]), Task.status != "done")
            .group_by(Task.project_id)
        )
        open_tasks = dict(counts.all())
    return render(
        request, "home.html", ctx=ctx, tenant=tenant, projects=projects, open_tasks=open_tasks
    )


@router.get("/t/{slug}", dependencies=[public()])
async def tenant_root(slug: Slug) -> Response:
    return RedirectResponse(tenant_path(slug.lower()), status_code=308)
