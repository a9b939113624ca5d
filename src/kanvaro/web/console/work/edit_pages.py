"""Editing what was written down: one's own comment (the author only: a moderator may remove
a comment, never reword it), a time entry (one's own with ``time:create``, anyone's with
``time:manage``) and a budget entry (``budget:update``). Each is a page of its own with a plain form, so it works without
JavaScript and at phone width; each save names the version it changes, as on the API.

The forms call the API's actions: ``comments.update_comment``, ``time_entries.update_entry``
and ``budget.update_entry``; the GET pages check the same rule before they show a form.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from kanvaro.deps import Ctx
from kanvaro.errors import ProblemError
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import page_tenant
from kanvaro.web.console.work.common import (
    NOTICES,
    Problem,
    Slug,
    amount_text,
    attempt,
    fresh,
    integer,
    parse,
    problem_of,
)
from kanvaro.web.console.work.finance import BUDGET_FORM, BUDGET_KINDS, BudgetWriter, budget_body
from kanvaro.web.console.work.task_pages import TIME_FORM, TimeWriter, time_body
from kanvaro.web.console.work.task_pages import Commenter as CommentEditor
from kanvaro.work import budget as budget_actions
from kanvaro.work import comments as comment_actions
from kanvaro.work import time_entries as time_actions
from kanvaro.work.models import Comment, TimeEntry
from kanvaro.work.schemas_finance import BudgetUpdate
from kanvaro.work.schemas_tasks import CommentUpdate
from kanvaro.work.schemas_time import TimeEntryUpdate

router = console_router()


NOTICES.update(
    {
        "comment-saved": "Comment saved.",
        "time-saved": "Time entry saved.",
        "budget-saved": "Budget entry saved.",
    }
)


# --- a comment -------------------------------------------------------------------------------


async def _comment_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    task_id: uuid.UUID,
    comment_id: uuid.UUID,
    *,
    form: dict[str, str] | None = None,
    problem: Problem | None = None,
) -> Response:
    await fresh(ctx)  # nothing of a refused save is kept; the comment as stored
    tenant = await page_tenant(ctx, slug)
    comment = await _own_comment(ctx, task_id, comment_id)
    return render(
        request,
        "work/comment_edit.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        comment=comment,
        form=form or {"body": comment.body, "version": str(comment.version)},
        problem=problem,
    )


async def _own_comment(ctx: Ctx, task_id: uuid.UUID, comment_id: uuid.UUID) -> Comment:
    comment = await comment_actions.get_comment(ctx, task_id, comment_id)
    await comment_actions.check_author(ctx, comment)
    return comment


@router.get("/t/{slug}/tasks/{task_id}/comments/{comment_id}/edit")
async def comment_edit_page(
    slug: Slug, task_id: uuid.UUID, comment_id: uuid.UUID, ctx: CommentEditor, request: Request
) -> Response:
    return await _comment_page(request, ctx, slug, task_id, comment_id)


@router.post("/t/{slug}/tasks/{task_id}/comments/{comment_id}/edit")
async def edit_comment(
    slug: Slug, task_id: uuid.UUID, comment_id: uuid.UUID, ctx: CommentEditor, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "body", "version")
    comment = await _own_comment(ctx, task_id, comment_id)
    try:
        data = parse(CommentUpdate, {"body": form["body"], "version": integer(form["version"])})
        await attempt(ctx, comment_actions.update_comment(ctx, comment, data, None))
    except ProblemError as exc:
        if exc.status in (403, 404):
            raise
        return await _comment_page(
            request, ctx, slug, task_id, comment_id, form=form, problem=problem_of(exc)
        )
    path = tenant_path(slug.lower(), f"/tasks/{task_id}")
    return RedirectResponse(f"{path}?notice=comment-saved#comments", status_code=303)


# --- a time entry ----------------------------------------------------------------------------


def _back(entry: TimeEntry, back: str) -> str:
    """The page the entry was edited from: its task's, or its project's time overview."""
    if back == "task" and entry.task_id is not None:
        return f"/tasks/{entry.task_id}"
    return f"/projects/{entry.project_id}/time"


async def _time_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    entry_id: uuid.UUID,
    back: str,
    *,
    form: dict[str, str] | None = None,
    problem: Problem | None = None,
) -> Response:
    await fresh(ctx)  # nothing of a refused save is kept; the entry as stored
    tenant = await page_tenant(ctx, slug)
    entry = await _changeable_entry(ctx, entry_id)
    return render(
        request,
        "work/time_edit.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        entry=entry,
        back=back if back in ("task", "project") else "project",
        back_path=_back(entry, back),
        form=form
        or {
            "date": entry.entry_date.isoformat(),
            "hours": str(entry.hours),
            "description": entry.description or "",
            "billable": "on" if entry.billable else "",
            "version": str(entry.version),
        },
        problem=problem,
    )


async def _changeable_entry(ctx: Ctx, entry_id: uuid.UUID) -> TimeEntry:
    entry = await time_actions.get_entry(ctx, entry_id)
    await time_actions.check_owner(ctx, entry)
    return entry


@router.get("/t/{slug}/time-entries/{entry_id}/edit")
async def time_edit_page(
    slug: Slug, entry_id: uuid.UUID, ctx: TimeWriter, request: Request
) -> Response:
    return await _time_page(request, ctx, slug, entry_id, request.query_params.get("back", ""))


@router.post("/t/{slug}/time-entries/{entry_id}/edit")
async def edit_time(slug: Slug, entry_id: uuid.UUID, ctx: TimeWriter, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *TIME_FORM, "version", "back")
    entry = await _changeable_entry(ctx, entry_id)
    try:
        body = time_body(form) | {"version": integer(form["version"])}
        data = parse(TimeEntryUpdate, body)
        await attempt(ctx, time_actions.update_entry(ctx, entry, data, None))
        back_path = _back(entry, form["back"])
    except ProblemError as exc:
        if exc.status in (403, 404):
            raise
        return await _time_page(
            request, ctx, slug, entry_id, form["back"], form=form, problem=problem_of(exc)
        )
    path = tenant_path(slug.lower(), back_path)
    anchor = "#time" if back_path.startswith("/tasks/") else ""
    return RedirectResponse(f"{path}?notice=time-saved{anchor}", status_code=303)


# --- a budget entry --------------------------------------------------------------------------

BUDGET_EDIT_FORM = (*BUDGET_FORM, "version")


async def _budget_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    entry_id: uuid.UUID,
    *,
    form: dict[str, str] | None = None,
    problem: Problem | None = None,
) -> Response:
    await fresh(ctx)  # nothing of a refused save is kept; the entry as stored
    tenant = await page_tenant(ctx, slug)
    entry = await budget_actions.get_entry(ctx, entry_id)
    return render(
        request,
        "work/budget_edit.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        entry=entry,
        kinds=BUDGET_KINDS,
        form=form
        or {
            "kind": entry.kind,
            "category": entry.category,
            "description": entry.description or "",
            "amount": amount_text(entry.amount_minor, entry.currency),
            "date": entry.entry_date.isoformat(),
            "version": str(entry.version),
        },
        problem=problem,
    )


@router.get("/t/{slug}/budget-entries/{entry_id}/edit")
async def budget_edit_page(
    slug: Slug, entry_id: uuid.UUID, ctx: BudgetWriter, request: Request
) -> Response:
    return await _budget_page(request, ctx, slug, entry_id)


@router.post("/t/{slug}/budget-entries/{entry_id}/edit")
async def edit_budget_entry(
    slug: Slug, entry_id: uuid.UUID, ctx: BudgetWriter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *BUDGET_EDIT_FORM)
    entry = await budget_actions.get_entry(ctx, entry_id)
    project_id = entry.project_id
    try:
        # Typed in the entry's own currency, as the page labels it.
        body = budget_body(form, entry.currency) | {"version": integer(form["version"])}
        data = parse(BudgetUpdate, body)
        await attempt(ctx, budget_actions.update_entry(ctx, entry, data, None))
    except ProblemError as exc:
        if exc.status in (403, 404) and not exc.errors:
            raise
        return await _budget_page(request, ctx, slug, entry_id, form=form, problem=problem_of(exc))
    path = tenant_path(slug.lower(), f"/projects/{project_id}/budget")
    return RedirectResponse(f"{path}?notice=budget-saved", status_code=303)
