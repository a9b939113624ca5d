"""Tasks and their assignees: service functions (no HTTP) and the thin router."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import delete, select

from kanvaro.audit import service as audit
from kanvaro.db import utcnow
from kanvaro.deps import Ctx, require
from kanvaro.errors import Forbidden, NotFound
from kanvaro.http_helpers import etag, json_response, set_etag
from kanvaro.identity.models import User
from kanvaro.schemas import IsoDate, JsonOut, Page, decode_cursor, page_of
from kanvaro.security.permissions import Permission as P
from kanvaro.work import task_reads, task_writes
from kanvaro.work.common import check_project, check_version, stamp, visible_projects
from kanvaro.work.models import (
    COMMENT_FIELDS,
    TIME_FIELDS,
    Comment,
    ProjectMember,
    Task,
    TaskAssignee,
    TimeEntry,
)
from kanvaro.work.schemas_tasks import TaskCreate, TaskOut, TaskPriority, TaskStatus, TaskUpdate

TASK_FIELDS = ("project_id", "title", "description", "priority", "status", "due_date")

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])
# Serializers of the hot reads: validated from row mappings, dumped straight to JSON bytes.
TASK_OUT = JsonOut(TaskOut)
PAGE_OF_TASKS = JsonOut(Page[TaskOut])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


# --- helpers shared with the comments module ------------------------------------------------


async def deny(ctx: Ctx, permission: str, detail: str) -> Forbidden:
    """A refusal decided inside a handler: logged and audited like one at the route, 403.

    ``Acting.deny`` writes its audit entry after the request's transaction has rolled back,
    so the refusal is recorded while nothing of the refused change is.
    """
    await ctx.deny(permission)
    return Forbidden(detail)


async def get_task(ctx: Ctx, task_id: uuid.UUID) -> Task:
    """The task, if it exists in this tenant and its project is visible to the caller."""
    stmt = visible_projects(ctx, select(Task).where(Task.id == task_id), Task.project_id)
    task = (await ctx.db.execute(stmt)).scalar_one_or_none()
    if task is None:
        raise NotFound("No such task.")
    return task


async def assignees_of(ctx: Ctx, task_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Assignee ids per task, in one query for a whole page."""
    ids = list(task_ids)
    out: dict[uuid.UUID, list[uuid.UUID]] = {t: [] for t in ids}
    if not ids:
        return out
    rows = await ctx.db.execute(
        select(TaskAssignee.task_id, TaskAssignee.user_id)
        .where(TaskAssignee.task_id.in_(ids))
        .order_by(TaskAssignee.task_id, TaskAssignee.user_id)
    )
    for task_id, user_id in rows:
        out[task_id].append(user_id)
    return out


def task_out(task: Task, assignee_ids: Sequence[uuid.UUID]) -> TaskOut:
    return TaskOut.model_validate({**_columns(task), "assignee_ids": list(assignee_ids)})


def _columns(task: Task) -> dict[str, Any]:
    return {c.key: getattr(task, c.key) for c in Task.__table__.columns}


def _snapshot(task: Task, assignee_ids: Iterable[uuid.UUID]) -> dict[str, Any]:
    return {
        **audit.snapshot(task, TASK_FIELDS),
        "assignee_ids": sorted(str(a) for a in assignee_ids),
    }


async def _record(
    ctx: Ctx,
    action: str,
    task: Task,
    before: Any,
    after: Any,
    *,
    changes: dict[str, Any] | None = None,
) -> None:
    await ctx.record(
        f"api:task:{action}",
        category="business_operations",
        resource_type="task",
        resource_id=task.id,
        changes=changes if changes is not None else audit.diff(before, after),
    )


async def may_assign(ctx: Ctx, project_id: uuid.UUID) -> bool:
    """``task:assign`` from the role, or within one project from its ``manager`` project role.

    The seed's role sets stay as they are (its admin holds no ``task:assign``); a project's
    ``manager`` members assign the work of that project, so an admin (who holds
    ``project:update``) makes himself or anyone a manager instead of asking the super admin.
    """
    principal = ctx.me()
    if principal.has(P.TASK_ASSIGN):
        return True
    found = await ctx.db.execute(
        select(ProjectMember.id).where(
            ProjectMember.project_id == project_id,
            ProjectMember.user_id == principal.user_id,
            ProjectMember.project_role == "manager",
        )
    )
    return found.first() is not None


async def _check_assignees(ctx: Ctx, user_ids: list[uuid.UUID]) -> None:
    """Assignees must be active users of this tenant (another tenant's user is unknown)."""
    if not user_ids:
        return
    found = set(
        (
            await ctx.db.execute(
                select(User.id).where(User.id.in_(user_ids), User.is_active.is_(True))
            )
        ).scalars()
    )
    unknown = [u for u in user_ids if u not in found]
    if unknown:
        raise NotFound(
            "No such user.",
            errors=[
                {"field": "assigneeIds", "in": "body", "message": f"unknown user {u}"}
                for u in unknown
            ],
        )


async def _set_assignees(
    ctx: Ctx, task: Task, current: list[uuid.UUID], wanted: list[uuid.UUID]
) -> None:
    gone = set(current) - set(wanted)
    if gone:
        await ctx.db.execute(
            delete(TaskAssignee).where(
                TaskAssignee.task_id == task.id, TaskAssignee.user_id.in_(gone)
            )
        )
    for user_id in wanted:
        if user_id not in current:
            ctx.db.add(
                TaskAssignee(
                    id=uuid.uuid4(), tenant_id=ctx.tenant_id, task_id=task.id, user_id=user_id
                )
            )


# --- service ---------------------------------------------------------------------------------


async def create_task(ctx: Ctx, data: TaskCreate) -> dict[str, Any]:
    """A new task and its ``api:task:create`` entry; the task's fields (``TaskOut``'s).

    On PostgreSQL, without assignees and as the request's first change, this is one statement
    that commits on its own (``task_writes``): call it as the request's only change."""
    if task_writes.may_create_in_one_statement(ctx, data.assignee_ids):
        fields = data.model_dump(exclude={"assignee_ids"})
        after = {
            **{name: audit.to_payload(fields[name]) for name in TASK_FIELDS},
            "assignee_ids": [],
        }
        stored = await task_writes.create(ctx, fields, after)
        return {**dict(stored), "assignee_ids": []}
    await check_project(ctx, data.project_id)
    if data.assignee_ids and not await may_assign(ctx, data.project_id):
        raise await deny(ctx, P.TASK_ASSIGN, "Assigning people needs permission task:assign.")
    await _check_assignees(ctx, data.assignee_ids)
    task = Task(
        id=uuid.uuid4(), tenant_id=ctx.tenant_id, **data.model_dump(exclude={"assignee_ids"})
    )
    stamp(task, ctx, created=True)
    ctx.db.add(task)
    await ctx.db.flush()
    await _set_assignees(ctx, task, [], data.assignee_ids)
    await ctx.db.flush()
    await _record(ctx, "create", task, None, _snapshot(task, data.assignee_ids))
    return {**_columns(task), "assignee_ids": sorted(data.assignee_ids)}


async def update_task(
    ctx: Ctx, task: Task, data: TaskUpdate, if_match: str | None
) -> tuple[Task, list[uuid.UUID]]:
    check_version(task.version, data.version, if_match)
    current = (await assignees_of(ctx, [task.id]))[task.id]
    reassign = data.assignee_ids is not None and set(data.assignee_ids) != set(current)
    wanted = data.assignee_ids if reassign and data.assignee_ids is not None else current
    if reassign:
        if not await may_assign(ctx, task.project_id):
            raise await deny(ctx, P.TASK_ASSIGN, "Changing assignees needs permission task:assign.")
        await _check_assignees(ctx, wanted)
    before = _snapshot(task, current)
    # One UPDATE for the whole change, so the version moves by exactly one.
    with ctx.db.no_autoflush:
        for name, value in data.model_dump(
            exclude_unset=True, exclude={"version", "assignee_ids"}
        ).items():
            setattr(task, name, value)
        stamp(task, ctx)
        if reassign:
            await _set_assignees(ctx, task, current, wanted)
            # Assignees live in their own table: touch the task so its version moves too.
            task.updated_at = utcnow()
    await ctx.db.flush()
    await _record(ctx, "update", task, before, _snapshot(task, wanted))
    return task, sorted(wanted)


async def delete_task(ctx: Ctx, task: Task, *, via: str | None = None) -> None:
    """Delete a task and account for every row that goes or changes with it.

    The foreign keys would cascade silently (comments, assignees) or detach silently (time
    entries, ``ON DELETE SET NULL``). Instead this removes and changes them here, each with its
    own audit entry in this transaction, tagged as its own action would be (so a search by the
    row's id finds it) and naming what caused it (``via``). Assignees are rows of the task and
    appear in its own entry. Logged hours are never destroyed: their entries lose the task link.
    """
    cause = {"via": via or f"task:{task.id}"}
    comments = (
        await ctx.db.execute(select(Comment).where(Comment.task_id == task.id).order_by(Comment.id))
    ).scalars()
    for comment in comments:
        await ctx.record(
            "api:comment:delete",
            category="business_operations",
            resource_type="comment",
            resource_id=comment.id,
            changes={**audit.diff(audit.snapshot(comment, COMMENT_FIELDS), None), **cause},
        )
        await ctx.db.delete(comment)
    await ctx.db.flush()  # before the task's DELETE, which would cascade to them unseen
    entries = (
        await ctx.db.execute(
            select(TimeEntry).where(TimeEntry.task_id == task.id).order_by(TimeEntry.id)
        )
    ).scalars()
    for entry in entries:
        before = audit.snapshot(entry, TIME_FIELDS)
        entry.task_id = None
        stamp(entry, ctx)
        await ctx.db.flush()
        await ctx.record(
            "api:time_entry:update",
            category="business_operations",
            resource_type="time_entry",
            resource_id=entry.id,
            changes={**audit.diff(before, audit.snapshot(entry, TIME_FIELDS)), **cause},
        )
    current = (await assignees_of(ctx, [task.id]))[task.id]
    before = _snapshot(task, current)
    await ctx.db.execute(delete(TaskAssignee).where(TaskAssignee.task_id == task.id))
    await ctx.db.delete(task)
    await ctx.db.flush()
    changes = audit.diff(before, None)
    if via:
        changes["via"] = via
    await _record(ctx, "delete", task, None, None, changes=changes)


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=Page[TaskOut], response_model_by_alias=True)
async def list_tasks(
    ctx: Annotated[Ctx, require(P.TASK_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    project_id: Annotated[uuid.UUID | None, Query(alias="projectId")] = None,
    status: TaskStatus | None = None,
    priority: TaskPriority | None = None,
    assignee_id: Annotated[uuid.UUID | None, Query(alias="assigneeId")] = None,
    due_before: Annotated[IsoDate | None, Query(alias="dueBefore")] = None,
    due_after: Annotated[IsoDate | None, Query(alias="dueAfter")] = None,
) -> Response:
    """Filters combine with AND; ``dueBefore``/``dueAfter`` are inclusive."""
    async with ctx.reader() as reader:
        rows, assignees = await task_reads.task_page(
            ctx,
            reader,
            limit=limit,
            after=decode_cursor(cursor) if cursor else None,
            project_id=project_id,
            status=status,
            priority=priority,
            assignee_id=assignee_id,
            due_before=due_before,
            due_after=due_after,
        )
    page = page_of(rows, limit, lambda t: {**t, "assignee_ids": assignees[t["id"]]})
    return json_response(PAGE_OF_TASKS.json(page))


@router.post("", status_code=201, response_model=TaskOut, response_model_by_alias=True)
async def post_task(body: TaskCreate, ctx: Annotated[Ctx, require(P.TASK_CREATE)]) -> Response:
    task = await create_task(ctx, body)
    headers = {"ETag": etag(task["version"]), "Location": f"/api/v1/tasks/{task['id']}"}
    return json_response(TASK_OUT.json(task), headers=headers, status_code=201)


@router.get("/{task_id}", response_model=TaskOut, response_model_by_alias=True)
async def get_one(task_id: uuid.UUID, ctx: Annotated[Ctx, require(P.TASK_READ)]) -> Response:
    async with ctx.reader() as reader:
        row, assignees = await task_reads.task_with_assignees(ctx, reader, task_id)
    body = TASK_OUT.json({**row, "assignee_ids": assignees})
    return json_response(body, headers={"ETag": etag(row["version"])})


@router.patch("/{task_id}", response_model=TaskOut, response_model_by_alias=True)
async def patch_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    response: Response,
    ctx: Annotated[Ctx, require(P.TASK_UPDATE)],
    if_match: IfMatch = None,
) -> TaskOut:
    task, assignees = await update_task(ctx, await get_task(ctx, task_id), body, if_match)
    set_etag(response, task.version)
    return task_out(task, assignees)


@router.delete("/{task_id}", status_code=204)
async def remove_task(task_id: uuid.UUID, ctx: Annotated[Ctx, require(P.TASK_DELETE)]) -> Response:
    await delete_task(ctx, await get_task(ctx, task_id))
    return Response(status_code=204)
