"""Projects: the list (status filter, search), creating one, a project's page with its edit
form (optimistic concurrency: the form carries the version it was made from) and its members.

Every page and form declares the permission its API route declares and calls the same
action (``kanvaro.work.projects``, ``kanvaro.work.members``); project-scoped roles see only
the projects they are members of (404 for the others, as on the API).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.forms import fields
from kanvaro.web.console.people import chosen, picker_full
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import page_tenant
from kanvaro.web.console.work.common import (
    Problem,
    Slug,
    amount_text,
    attempt,
    fresh,
    integer,
    money,
    names_of,
    optional,
    parse,
    problem_of,
    tenant_people,
    to_minor,
)
from kanvaro.work import members as member_actions
from kanvaro.work import projects as project_actions
from kanvaro.work.common import get_project
from kanvaro.work.models import PROJECT_ROLES, PROJECT_STATUSES, Task
from kanvaro.work.schemas import MemberCreate, MemberUpdate, ProjectCreate, ProjectUpdate

router = console_router()
MEMBERS_PAGE = 200  # members listed on a project's page at a time

Reader = Annotated[Ctx, require(P.PROJECT_READ)]
Creator = Annotated[Ctx, require(P.PROJECT_CREATE)]
Updater = Annotated[Ctx, require(P.PROJECT_UPDATE)]
Deleter = Annotated[Ctx, require(P.PROJECT_DELETE)]

PROJECT_FORM = ("name", "description", "status", "budget", "currency", "startDate", "endDate")
LIST_LIMIT = 100


def _redirect(slug: str, path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{tenant_path(slug.lower(), path)}?notice={notice}", status_code=303)


def _project_body(form: dict[str, str], *, currency: str) -> dict[str, Any]:
    """The form as the API's body (camelCase; a blank optional field is left out)."""
    body: dict[str, Any] = {"name": form["name"], "description": form["description"]}
    if form["status"]:
        body["status"] = form["status"]
    body["currency"] = form["currency"].upper() or currency
    budget = to_minor(form["budget"], body["currency"], field="budgetMinor")
    body["budgetMinor"] = budget
    body["startDate"] = optional(form["startDate"])
    body["endDate"] = optional(form["endDate"])
    return body


# --- the list and creating -------------------------------------------------------------------


@router.get("/t/{slug}/projects")
async def projects_page(slug: Slug, ctx: Reader, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    status = request.query_params.get("status") or ""
    status = status if status in PROJECT_STATUSES else ""
    q = (request.query_params.get("q") or "").strip()[:100]
    cursor = request.query_params.get("cursor") or None
    page = await project_actions.list_projects(
        ctx, cursor=cursor, limit=LIST_LIMIT, status=status or None, q=q or None
    )
    projects = page["items"]
    open_tasks: dict[uuid.UUID, int] = {}
    if projects:
        counts = await ctx.db.execute(
            select(Task.project_id, func.count())
            .where(Task.project_id.in_([p.id for p in projects]), Task.status != "done")
            .group_by(Task.project_id)
        )
        open_tasks = dict(counts.all())
    return render(
        request,
        "work/projects.html",
        ctx=ctx,
        tenant=tenant,
        projects=projects,
        open_tasks=open_tasks,
        next_cursor=page["nextCursor"],
        status_filter=status,
        q=q,
        statuses=PROJECT_STATUSES,
        money=money,
    )


def _new_page(
    request: Request, ctx: Ctx, tenant: Any, form: dict[str, str], problem: Problem | None
) -> Response:
    return render(
        request,
        "work/project_new.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        form=form,
        problem=problem,
        statuses=PROJECT_STATUSES,
    )


@router.get("/t/{slug}/projects/new")
async def new_project_page(slug: Slug, ctx: Creator, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    form = dict.fromkeys(PROJECT_FORM, "") | {"status": "planning", "currency": "USD"}
    return _new_page(request, ctx, tenant, form, None)


@router.post("/t/{slug}/projects")
async def create_project(slug: Slug, ctx: Creator, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    form = fields(await request.form(), *PROJECT_FORM)
    try:
        data = parse(ProjectCreate, _project_body(form, currency="USD"))
        project = await attempt(ctx, project_actions.create_project(ctx, data))
    except ProblemError as exc:
        tenant = await page_tenant(ctx, slug)
        return _new_page(request, ctx, tenant, form, problem_of(exc))
    return _redirect(slug, f"/projects/{project.id}", "project-created")


# --- one project -----------------------------------------------------------------------------


async def _detail(
    request: Request,
    ctx: Ctx,
    slug: str,
    project_id: uuid.UUID,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
    member_problem: Problem | None = None,
) -> Response:
    await fresh(ctx)
    tenant = await page_tenant(ctx, slug)
    project = await get_project(ctx, project_id)
    listed = await project_actions.list_members(
        project_id, ctx, cursor=request.query_params.get("members") or None, limit=MEMBERS_PAGE
    )
    members = listed["items"]
    names = await names_of(ctx, [m.user_id for m in members])
    member_ids = {m.user_id for m in members}
    everyone = await tenant_people(ctx) if ctx.principal.has(P.PROJECT_UPDATE) else []
    people = [p for p in everyone if p[0] not in member_ids]
    counts = dict(
        (
            await ctx.db.execute(
                select(Task.status, func.count())
                .where(Task.project_id == project_id)
                .group_by(Task.status)
            )
        ).all()
    )
    if form is None:
        form = {
            "name": project.name,
            "description": project.description,
            "status": project.status,
            "budget": amount_text(project.budget_minor, project.currency),
            "currency": project.currency,
            "startDate": project.start_date.isoformat() if project.start_date else "",
            "endDate": project.end_date.isoformat() if project.end_date else "",
            "version": str(project.version),
        }
    status = (problem or member_problem).status if (problem or member_problem) else 200
    return render(
        request,
        "work/project.html",
        ctx=ctx,
        status=status,
        tenant=tenant,
        project=project,
        members=members,
        more_members=listed["nextCursor"],
        names=names,
        people=people,
        more_people=picker_full(everyone),
        counts=counts,
        form=form,
        problem=problem,
        member_problem=member_problem,
        statuses=PROJECT_STATUSES,
        roles=PROJECT_ROLES,
        money=money,
    )


@router.get("/t/{slug}/projects/{project_id}")
async def project_page(
    slug: Slug, project_id: uuid.UUID, ctx: Reader, request: Request
) -> Response:
    return await _detail(request, ctx, slug, project_id)


@router.post("/t/{slug}/projects/{project_id}/edit")
async def edit_project(
    slug: Slug, project_id: uuid.UUID, ctx: Updater, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *PROJECT_FORM, "version")
    try:
        project = await get_project(ctx, project_id)
        body = _project_body(form, currency=project.currency)
        body["version"] = integer(form["version"])
        data = parse(ProjectUpdate, body)
        await attempt(ctx, project_actions.update_project(ctx, project, data, None))
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return await _detail(request, ctx, slug, project_id, problem=problem_of(exc), form=form)
    return _redirect(slug, f"/projects/{project_id}", "project-saved")


@router.post("/t/{slug}/projects/{project_id}/delete")
async def delete_project(
    slug: Slug, project_id: uuid.UUID, ctx: Deleter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    try:
        project = await get_project(ctx, project_id)
        await attempt(ctx, project_actions.delete_project(ctx, project))
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return await _detail(request, ctx, slug, project_id, problem=problem_of(exc))
    return _redirect(slug, "/projects", "project-deleted")


# --- members ---------------------------------------------------------------------------------


@router.post("/t/{slug}/projects/{project_id}/members")
async def add_member(slug: Slug, project_id: uuid.UUID, ctx: Updater, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "userId", "userEmail", "projectRole")
    try:
        user = await chosen(ctx, form, "userId")
        data = parse(
            MemberCreate,
            {"userId": user, "projectRole": form["projectRole"] or "contributor"},
        )
        await attempt(
            ctx, member_actions.add_member(ctx, project_id, data.user_id, data.project_role)
        )
    except ProblemError as exc:
        if exc.status == 404 and not exc.errors:
            raise
        return await _detail(request, ctx, slug, project_id, member_problem=problem_of(exc))
    return _redirect(slug, f"/projects/{project_id}", "member-added")


@router.post("/t/{slug}/projects/{project_id}/members/{member_id}/role")
async def change_member_role(
    slug: Slug, project_id: uuid.UUID, member_id: uuid.UUID, ctx: Updater, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "projectRole", "version")
    try:
        data = parse(
            MemberUpdate, {"projectRole": form["projectRole"], "version": integer(form["version"])}
        )
        member = await member_actions.get_member(ctx, project_id, member_id)
        await attempt(
            ctx,
            member_actions.update_member(
                ctx, member, data.project_role, version=data.version, if_match=None
            ),
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return await _detail(request, ctx, slug, project_id, member_problem=problem_of(exc))
    return _redirect(slug, f"/projects/{project_id}", "member-saved")


@router.post("/t/{slug}/projects/{project_id}/members/{member_id}/remove")
async def remove_member(
    slug: Slug, project_id: uuid.UUID, member_id: uuid.UUID, ctx: Updater, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    member = await member_actions.get_member(ctx, project_id, member_id)
    await attempt(ctx, member_actions.remove_member(ctx, member))
    return _redirect(slug, f"/projects/{project_id}", "member-removed")
