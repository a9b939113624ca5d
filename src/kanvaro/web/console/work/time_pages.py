"""A project's time: every entry logged on it (``time:read``; project-scoped roles see their
projects' entries, everyone's, as on the API), totals per person, and logging time on the
project or one of its tasks (``time:create``: one's own hours)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import page_tenant
from kanvaro.web.console.work.common import (
    Problem,
    Slug,
    attempt,
    fresh,
    names_of,
    parse,
    problem_of,
)
from kanvaro.web.console.work.task_pages import TIME_FORM, time_body
from kanvaro.work import time_entries as time_actions
from kanvaro.work.common import get_project
from kanvaro.work.models import Task
from kanvaro.work.schemas_time import TimeEntryCreate

router = console_router()

TimeReader = Annotated[Ctx, require(P.PROJECT_READ, P.TIME_READ)]
TimeLogger = Annotated[Ctx, require(P.TIME_CREATE)]


async def _time_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    project_id: uuid.UUID,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    await fresh(ctx)
    tenant = await page_tenant(ctx, slug)
    project = await get_project(ctx, project_id)
    cursor = request.query_params.get("cursor") or None
    page = await time_actions.list_entries(
        ctx,
        cursor=cursor,
        limit=200,
        project_id=project_id,
        task_id=None,
        user_id=None,
        date_from=None,
        date_to=None,
        billable=None,
    )
    entries = page["items"]
    tasks = dict(
        (
            await ctx.db.execute(
                select(Task.id, Task.title)
                .where(Task.project_id == project_id)
                .order_by(Task.title)
            )
        ).all()
    )
    names = await names_of(ctx, [e.user_id for e in entries])
    per_person: dict[str, Decimal] = {}
    billable = Decimal(0)
    for e in entries:
        who = names.get(e.user_id, "Someone") if e.user_id else "Former member"
        per_person[who] = per_person.get(who, Decimal(0)) + e.hours
        if e.billable:
            billable += e.hours
    today = ctx.services.clock.now().date().isoformat()
    return render(
        request,
        "work/time.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        project=project,
        entries=entries,
        next_cursor=page["nextCursor"],
        tasks=tasks,
        names=names,
        per_person=sorted(per_person.items()),
        total=sum((e.hours for e in entries), start=Decimal(0)),
        billable=billable,
        problem=problem,
        form=form
        or {"date": today, "hours": "", "description": "", "billable": "on", "taskId": ""},
    )


@router.get("/t/{slug}/projects/{project_id}/time")
async def time_page(
    slug: Slug, project_id: uuid.UUID, ctx: TimeReader, request: Request
) -> Response:
    return await _time_page(request, ctx, slug, project_id)


@router.post("/t/{slug}/projects/{project_id}/time")
async def log_project_time(
    slug: Slug, project_id: uuid.UUID, ctx: TimeLogger, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *TIME_FORM, "taskId")
    try:
        body = time_body(form) | {"projectId": str(project_id), "taskId": form["taskId"] or None}
        data = parse(TimeEntryCreate, body)
        await attempt(ctx, time_actions.create_entry(ctx, data))
    except ProblemError as exc:
        if exc.status == 404 and not exc.errors:
            raise
        if not ctx.principal.has(P.TIME_READ):
            raise
        return await _time_page(request, ctx, slug, project_id, problem=problem_of(exc), form=form)
    path = tenant_path(slug.lower(), f"/projects/{project_id}/time")
    return RedirectResponse(f"{path}?notice=time-logged", status_code=303)
