"""A task's page: its fields with the edit form (with its version), its assignees, its comments
and the time logged on it.

The forms call the actions the API routes call: ``tasks.update_task`` (edit, assign and
unassign: each names the version it changes), ``comments.create_comment`` /
``delete_comment`` (one's own, or anyone's with ``comment:delete``), and
``time_entries.create_entry`` / ``delete_entry`` (one's own, or anyone's with ``time:manage``).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import func, select

from kanvaro.deps import Ctx, require, require_any
from kanvaro.errors import ProblemError
from kanvaro.schemas import sanitize_html
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.forms import fields
from kanvaro.web.console.people import chosen
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import page_tenant
from kanvaro.web.console.work.board import MEMBER_PICKER_LIMIT, project_people, task_body
from kanvaro.web.console.work.common import (
    Problem,
    Slug,
    attempt,
    fresh,
    integer,
    names_of,
    parse,
    problem_of,
)
from kanvaro.work import comments as comment_actions
from kanvaro.work import task_reads
from kanvaro.work import tasks as task_actions
from kanvaro.work import time_entries as time_actions
from kanvaro.work.common import get_project
from kanvaro.work.models import TASK_PRIORITIES, TASK_STATUSES, TimeEntry
from kanvaro.work.schemas_tasks import CommentCreate, TaskUpdate
from kanvaro.work.schemas_time import TimeEntryCreate

router = console_router()

TaskReader = Annotated[Ctx, require(P.TASK_READ)]
TaskUpdater = Annotated[Ctx, require(P.TASK_UPDATE)]
TaskDeleter = Annotated[Ctx, require(P.TASK_DELETE)]
Commenter = Annotated[Ctx, require(P.COMMENT_CREATE)]
CommentRemover = Annotated[Ctx, require_any(P.COMMENT_CREATE, P.COMMENT_DELETE)]
TimeLogger = Annotated[Ctx, require(P.TIME_CREATE)]
TimeWriter = Annotated[Ctx, require_any(P.TIME_CREATE, P.TIME_MANAGE)]

EDIT_FORM = ("title", "description", "priority", "status", "dueDate", "version")
TIME_FORM = ("date", "hours", "description", "billable")


def rich(value: str) -> Markup:
    """Rich text as stored (sanitized on the way in), sanitized once more on the way out."""
    return Markup(sanitize_html(value or ""))  # noqa: S704 - the allow-list sanitizer's output


def _task_url(slug: str, task_id: uuid.UUID, notice: str, anchor: str = "") -> RedirectResponse:
    path = tenant_path(slug.lower(), f"/tasks/{task_id}")
    return RedirectResponse(f"{path}?notice={notice}{anchor}", status_code=303)


async def task_detail(
    request: Request,
    ctx: Ctx,
    slug: str,
    task_id: uuid.UUID,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
    comment_problem: Problem | None = None,
    comment_form: str = "",
    time_problem: Problem | None = None,
    time_form: dict[str, str] | None = None,
) -> Response:
    await fresh(ctx)
    # The lean reader first: on SQLite the ORM session's transaction would hold the write lock.
    async with ctx.reader() as reader:
        task, assignee_ids = await task_reads.task_with_assignees(ctx, reader, task_id)
    tenant = await page_tenant(ctx, slug)
    task = dict(task)
    project = await get_project(ctx, task["project_id"])
    me = ctx.me()
    # Two lists, each with its own cursor: ?comments=<cursor> and ?time=<cursor>.
    comments: list[Any] = []
    more_comments = more_time = None
    total_hours: Decimal = Decimal(0)
    if me.has(P.COMMENT_READ):
        listed = await comment_actions.list_comments(
            task_id, ctx, cursor=request.query_params.get("comments") or None, limit=200
        )
        comments, more_comments = listed["items"], listed["nextCursor"]
    entries: list[Any] = []
    if me.has(P.TIME_READ):
        listed = await time_actions.list_entries(
            ctx,
            cursor=request.query_params.get("time") or None,
            limit=200,
            project_id=None,
            task_id=task_id,
            user_id=None,
            date_from=None,
            date_to=None,
            billable=None,
        )
        entries, more_time = listed["items"], listed["nextCursor"]
        # The task's whole total, not only the page's: the project is visible (the task was).
        summed = await ctx.db.execute(
            select(func.sum(TimeEntry.hours)).where(TimeEntry.task_id == task_id)
        )
        total_hours = Decimal(summed.scalar_one() or 0)
    names = await names_of(
        ctx,
        [*assignee_ids, *(c.author_id for c in comments), *(e.user_id for e in entries)],
    )
    may_assign = me.has(P.TASK_UPDATE) and await task_actions.may_assign(ctx, project.id)
    members = await project_people(ctx, project.id) if may_assign else []
    people = [p for p in members if p[0] not in assignee_ids]
    if form is None:
        form = {
            "title": task["title"],
            "description": task["description"],
            "priority": task["priority"],
            "status": task["status"],
            "dueDate": task["due_date"].isoformat() if task["due_date"] else "",
            "version": str(task["version"]),
        }
    today = ctx.services.clock.now().date().isoformat()
    status = next((p.status for p in (problem, comment_problem, time_problem) if p), 200)
    return render(
        request,
        "work/task.html",
        ctx=ctx,
        status=status,
        tenant=tenant,
        task=task,
        project=project,
        assignee_ids=assignee_ids,
        names=names,
        people=people,
        more_people=len(members) >= MEMBER_PICKER_LIMIT,
        may_assign=may_assign,
        comments=comments,
        entries=entries,
        total_hours=total_hours,
        more_comments=more_comments,
        more_time=more_time,
        form=form,
        problem=problem,
        comment_problem=comment_problem,
        comment_form=comment_form,
        time_problem=time_problem,
        time_form=time_form or {"date": today, "hours": "", "description": "", "billable": "on"},
        statuses=TASK_STATUSES,
        priorities=TASK_PRIORITIES,
        rich=rich,
    )


@router.get("/t/{slug}/tasks/{task_id}")
async def task_page(slug: Slug, task_id: uuid.UUID, ctx: TaskReader, request: Request) -> Response:
    return await task_detail(request, ctx, slug, task_id)


@router.post("/t/{slug}/tasks/{task_id}/edit")
async def edit_task(slug: Slug, task_id: uuid.UUID, ctx: TaskUpdater, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *EDIT_FORM)
    task = await task_actions.get_task(ctx, task_id)
    try:
        body = task_body(form) | {"version": integer(form["version"])}
        body.setdefault("description", "")
        data = parse(TaskUpdate, body)
        await attempt(ctx, task_actions.update_task(ctx, task, data, None))
    except ProblemError as exc:
        return await task_detail(request, ctx, slug, task_id, problem=problem_of(exc), form=form)
    return _task_url(slug, task_id, "task-saved")


async def _reassign(
    request: Request, ctx: Ctx, slug: str, task_id: uuid.UUID, *, add: bool
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "userId", "userEmail", "version")
    task = await task_actions.get_task(ctx, task_id)
    current = (await task_actions.assignees_of(ctx, [task.id]))[task.id]
    try:
        # Past the picker, a person is named by address (the action checks who may be one).
        user = await chosen(ctx, form, "userId") if add else form["userId"]
        wanted = [str(u) for u in current]
        if add:
            wanted = [*wanted, user] if user not in wanted else wanted
        else:
            wanted = [u for u in wanted if u != user]
        data = parse(TaskUpdate, {"assigneeIds": wanted, "version": integer(form["version"])})
        await attempt(ctx, task_actions.update_task(ctx, task, data, None))
    except ProblemError as exc:
        return await task_detail(request, ctx, slug, task_id, problem=problem_of(exc))
    return _task_url(slug, task_id, "assignee-added" if add else "assignee-removed", "#people")


@router.post("/t/{slug}/tasks/{task_id}/assignees")
async def assign(slug: Slug, task_id: uuid.UUID, ctx: TaskUpdater, request: Request) -> Response:
    return await _reassign(request, ctx, slug, task_id, add=True)


@router.post("/t/{slug}/tasks/{task_id}/assignees/remove")
async def unassign(slug: Slug, task_id: uuid.UUID, ctx: TaskUpdater, request: Request) -> Response:
    return await _reassign(request, ctx, slug, task_id, add=False)


@router.post("/t/{slug}/tasks/{task_id}/delete")
async def delete_task(
    slug: Slug, task_id: uuid.UUID, ctx: TaskDeleter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    task = await task_actions.get_task(ctx, task_id)
    project_id = task.project_id
    await attempt(ctx, task_actions.delete_task(ctx, task))
    board = tenant_path(slug.lower(), f"/projects/{project_id}/board")
    return RedirectResponse(f"{board}?notice=task-deleted", status_code=303)


# --- comments --------------------------------------------------------------------------------


@router.post("/t/{slug}/tasks/{task_id}/comments")
async def add_comment(slug: Slug, task_id: uuid.UUID, ctx: Commenter, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "body")
    try:
        data = parse(CommentCreate, {"body": form["body"]})
        await attempt(ctx, comment_actions.create_comment(ctx, task_id, data))
    except ProblemError as exc:
        if exc.status == 404 or not ctx.principal.has(P.TASK_READ):
            raise
        return await task_detail(
            request, ctx, slug, task_id, comment_problem=problem_of(exc), comment_form=form["body"]
        )
    return _task_url(slug, task_id, "comment-added", "#comments")


@router.post("/t/{slug}/tasks/{task_id}/comments/{comment_id}/delete")
async def delete_comment(
    slug: Slug, task_id: uuid.UUID, comment_id: uuid.UUID, ctx: CommentRemover, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    comment = await comment_actions.get_comment(ctx, task_id, comment_id)
    await attempt(ctx, comment_actions.delete_comment(ctx, comment))
    return _task_url(slug, task_id, "comment-deleted", "#comments")


# --- time ------------------------------------------------------------------------------------


def time_body(form: dict[str, str]) -> dict[str, Any]:
    return {
        "date": form["date"],
        "hours": form["hours"] or None,
        "description": form["description"],
        "billable": form["billable"] in ("on", "true", "1", "yes"),
    }


@router.post("/t/{slug}/tasks/{task_id}/time")
async def log_time(slug: Slug, task_id: uuid.UUID, ctx: TimeLogger, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *TIME_FORM)
    task = await task_actions.get_task(ctx, task_id)
    project_id = task.project_id
    try:
        body = time_body(form) | {"projectId": str(project_id), "taskId": str(task_id)}
        data = parse(TimeEntryCreate, body)
        await attempt(ctx, time_actions.create_entry(ctx, data))
    except ProblemError as exc:
        if not ctx.principal.has(P.TASK_READ):
            raise
        return await task_detail(
            request, ctx, slug, task_id, time_problem=problem_of(exc), time_form=form
        )
    return _task_url(slug, task_id, "time-logged", "#time")


@router.post("/t/{slug}/time-entries/{entry_id}/delete")
async def delete_time(
    slug: Slug, entry_id: uuid.UUID, ctx: TimeWriter, request: Request
) -> Response:
    """Back to the page the form was on: the task's, or the project's time overview."""
    await page_tenant(ctx, slug)
    entry = await time_actions.get_entry(ctx, entry_id)
    task_id, project_id = entry.task_id, entry.project_id
    await attempt(ctx, time_actions.delete_entry(ctx, entry))
    form = fields(await request.form(), "back")
    if form["back"] == "task" and task_id is not None:
        return _task_url(slug, task_id, "time-deleted", "#time")
    path = tenant_path(slug.lower(), f"/projects/{project_id}/time")
    return RedirectResponse(f"{path}?notice=time-deleted", status_code=303)
