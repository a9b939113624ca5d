"""A project's task board: one column per task status, a card per task, and the new-task form.

Moving a card is an update of the task's status with the version the card was drawn from
(``tasks.update_task``, the action ``PATCH /api/v1/tasks/{id}`` calls): a card moved by
someone else meanwhile is refused and the board says so, changing nothing. Without
JavaScript each card carries a small form (the new status, the hidden version, a button);
``work-board.js`` adds drag-and-drop, which sends the same change to the JSON API with
``If-Match``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.schemas import decode_cursor, encode_cursor
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console import register_asset
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router, safe_next, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import page_tenant
from kanvaro.web.console.work.common import (
    Problem,
    Slug,
    attempt,
    fresh,
    integer,
    names_of,
    optional,
    parse,
    problem_of,
)
from kanvaro.work import projects as project_actions
from kanvaro.work import task_reads
from kanvaro.work import tasks as task_actions
from kanvaro.work.common import get_project
from kanvaro.work.models import TASK_PRIORITIES, TASK_STATUSES
from kanvaro.work.schemas_tasks import TaskCreate, TaskUpdate

register_asset("work-board.js")

router = console_router()

TaskReader = Annotated[Ctx, require(P.PROJECT_READ, P.TASK_READ)]
TaskCreator = Annotated[Ctx, require(P.TASK_CREATE)]
TaskUpdater = Annotated[Ctx, require(P.TASK_UPDATE)]

BOARD_LIMIT = 500  # cards per board page, oldest first; the next page follows a cursor
TASK_FORM = ("title", "description", "priority", "status", "dueDate", "assigneeId")


MEMBER_PICKER_LIMIT = 200  # members an assignee picker lists; anyone else is named by email


async def project_people(ctx: Ctx, project_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    """The project's first members with their names, for assignee pickers."""
    listed = await project_actions.list_members(
        project_id, ctx, cursor=None, limit=MEMBER_PICKER_LIMIT
    )
    members = listed["items"]
    names = await names_of(ctx, [m.user_id for m in members])
    return sorted(
        ((m.user_id, names.get(m.user_id, "Someone")) for m in members), key=lambda p: p[1]
    )


async def _board(
    request: Request,
    ctx: Ctx,
    slug: str,
    project_id: uuid.UUID,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
    moved_problem: Problem | None = None,
    after: str | None = None,
) -> Response:
    await fresh(ctx)
    # A page of the board starts after the last card of the one before (the API's cursor); a
    # cursor that is not one answers 400 before anything is read.
    start = decode_cursor(after) if after else None
    # The lean reader first: on SQLite the ORM session's transaction would hold the write lock.
    async with ctx.reader() as reader:
        rows, assignees = await task_reads.task_page(
            ctx,
            reader,
            limit=BOARD_LIMIT,
            after=start,
            project_id=project_id,
            status=None,
            priority=None,
            assignee_id=None,
            due_before=None,
            due_after=None,
        )
    tenant = await page_tenant(ctx, slug)
    project = await get_project(ctx, project_id)
    cards = [dict(r) for r in rows[:BOARD_LIMIT]]
    next_cursor = (
        encode_cursor(cards[-1]["created_at"], cards[-1]["id"]) if len(rows) > BOARD_LIMIT else None
    )
    names = await names_of(ctx, [u for ids in assignees.values() for u in ids])
    columns: dict[str, list[dict[str, Any]]] = {s: [] for s in TASK_STATUSES}
    for card in cards:
        card["assignees"] = [names.get(u, "Someone") for u in assignees.get(card["id"], [])]
        columns[card["status"]].append(card)
    may_assign = await task_actions.may_assign(ctx, project_id)
    people = await project_people(ctx, project_id) if may_assign else []
    status = next((p.status for p in (problem, moved_problem) if p), 200)
    return render(
        request,
        "work/board.html",
        ctx=ctx,
        status=status,
        tenant=tenant,
        project=project,
        columns=columns,
        next_cursor=next_cursor,
        paged=start is not None,
        statuses=TASK_STATUSES,
        priorities=TASK_PRIORITIES,
        form=form or {"title": "", "priority": "medium", "status": "todo", "dueDate": ""},
        problem=problem,
        moved_problem=moved_problem,
        may_assign=may_assign,
        people=people,
    )


@router.get("/t/{slug}/projects/{project_id}/board")
async def board_page(
    slug: Slug,
    project_id: uuid.UUID,
    ctx: TaskReader,
    request: Request,
    after: str | None = None,
) -> Response:
    return await _board(request, ctx, slug, project_id, after=after)


def task_body(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"title": form["title"]}
    for name in ("description", "priority", "status"):
        if form.get(name):
            body[name] = form[name]
    body["dueDate"] = optional(form.get("dueDate", ""))
    return body


@router.post("/t/{slug}/projects/{project_id}/tasks")
async def create_task(
    slug: Slug, project_id: uuid.UUID, ctx: TaskCreator, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *TASK_FORM)
    try:
        body = task_body(form) | {"projectId": str(project_id)}
        if form["assigneeId"]:
            body["assigneeIds"] = [form["assigneeId"]]
        data = parse(TaskCreate, body)
        await attempt(ctx, task_actions.create_task(ctx, data))
    except ProblemError as exc:
        if exc.status == 404 and not exc.errors:
            raise
        if not ctx.principal.has(P.TASK_READ):
            raise
        return await _board(request, ctx, slug, project_id, problem=problem_of(exc), form=form)
    return RedirectResponse(
        f"{tenant_path(slug.lower(), f'/projects/{project_id}/board')}?notice=task-created",
        status_code=303,
    )


@router.post("/t/{slug}/tasks/{task_id}/move")
async def move_task(slug: Slug, task_id: uuid.UUID, ctx: TaskUpdater, request: Request) -> Response:
    """The card's form: the new status and the version it was drawn from."""
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "status", "version", "next")
    task = await task_actions.get_task(ctx, task_id)
    project_id = task.project_id
    board = tenant_path(slug.lower(), f"/projects/{project_id}/board")
    try:
        data = parse(TaskUpdate, {"status": form["status"], "version": integer(form["version"])})
        await attempt(ctx, task_actions.update_task(ctx, task, data, None))
    except ProblemError as exc:
        return await _board(request, ctx, slug, project_id, moved_problem=problem_of(exc))
    target = safe_next(form["next"], board)
    if "?" in target or not target.startswith(tenant_path(slug.lower())):
        target = board
    return RedirectResponse(f"{target}?notice=task-moved", status_code=303)
