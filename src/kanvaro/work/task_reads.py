"""The hot reads of tasks (one task, a filtered page) as compiled Core queries.

Writes keep going through the ORM session (``kanvaro.work.tasks``); these reads go through
``kanvaro.reads`` and name their tenant and project scoping explicitly: the tenant filter on
every table, and for project-scoped roles (team member, client, viewer) the caller's project
memberships, the same rule as ``common.visible_projects``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Uuid, and_, bindparam, func, or_, select
from sqlalchemy.sql import ColumnElement, Select

from kanvaro.acting import Acting
from kanvaro.errors import NotFound
from kanvaro.reads import Query, Reader, Row
from kanvaro.work.models import ProjectMember, Task, TaskAssignee

TASK_TABLE = Task.__table__
TENANT = bindparam("tenant_id", type_=Uuid())


def visible(project_column: Any) -> ColumnElement[bool]:
    """The caller's project memberships (``user_id``), for project-scoped roles."""
    return project_column.in_(
        select(ProjectMember.project_id).where(
            ProjectMember.tenant_id == TENANT,
            ProjectMember.user_id == bindparam("user_id", type_=Uuid()),
        )
    )


# PostgreSQL returns a task's assignee ids in its own row, so one task or a page of them is
# one statement; elsewhere they come from a second query (ASSIGNEES_OF_*).
_INLINE_ASSIGNEES = func.array(
    select(TaskAssignee.user_id)
    .where(TaskAssignee.tenant_id == TASK_TABLE.c.tenant_id)
    .where(TaskAssignee.task_id == TASK_TABLE.c.id)
    .order_by(TaskAssignee.user_id)
    .scalar_subquery()
).label("assignee_ids")


def _tasks(scoped: bool, *, inline: bool) -> Select[Any]:
    columns = (TASK_TABLE, _INLINE_ASSIGNEES) if inline else (TASK_TABLE,)
    stmt = select(*columns).where(TASK_TABLE.c.tenant_id == TENANT)
    return stmt.where(visible(TASK_TABLE.c.project_id)) if scoped else stmt


def _query(build: Any) -> Query:
    """The portable form, and the PostgreSQL one with the assignee ids inlined."""
    return Query(build(inline=False), postgresql=build(inline=True))


@cache
def _by_id(scoped: bool) -> Query:
    task_id = TASK_TABLE.c.id == bindparam("task_id", type_=Uuid())
    return _query(lambda inline: _tasks(scoped, inline=inline).where(task_id))


_ASSIGNEES_COLUMNS = (TaskAssignee.task_id, TaskAssignee.user_id)
ASSIGNEES_OF_ONE = Query(
    select(*_ASSIGNEES_COLUMNS)
    .where(
        TaskAssignee.tenant_id == TENANT,
        TaskAssignee.task_id == bindparam("task_id", type_=Uuid()),
    )
    .order_by(TaskAssignee.user_id)
)
ASSIGNEES_OF_PAGE = Query(
    select(*_ASSIGNEES_COLUMNS)
    .where(
        TaskAssignee.tenant_id == TENANT,
        TaskAssignee.task_id.in_(bindparam("task_ids", expanding=True, type_=Uuid())),
    )
    .order_by(TaskAssignee.task_id, TaskAssignee.user_id),
)


@cache
def _page(
    scoped: bool,
    *,
    project: bool,
    status: bool,
    priority: bool,
    assignee: bool,
    due_before: bool,
    due_after: bool,
    after: bool,
) -> Query:
    """One compiled query per combination of filters (at most 2^8, built on first use)."""
    return _query(
        lambda inline: _filtered(
            _tasks(scoped, inline=inline),
            project=project,
            status=status,
            priority=priority,
            assignee=assignee,
            due_before=due_before,
            due_after=due_after,
            after=after,
        )
    )


def _filtered(
    stmt: Select[Any],
    *,
    project: bool,
    status: bool,
    priority: bool,
    assignee: bool,
    due_before: bool,
    due_after: bool,
    after: bool,
) -> Select[Any]:
    c = TASK_TABLE.c
    if project:
        stmt = stmt.where(c.project_id == bindparam("project_id", type_=Uuid()))
    if status:
        stmt = stmt.where(c.status == bindparam("status"))
    if priority:
        stmt = stmt.where(c.priority == bindparam("priority"))
    if assignee:
        stmt = stmt.where(
            c.id.in_(
                select(TaskAssignee.task_id).where(
                    TaskAssignee.tenant_id == TENANT,
                    TaskAssignee.user_id == bindparam("assignee_id", type_=Uuid()),
                )
            )
        )
    if due_before:
        stmt = stmt.where(c.due_date <= bindparam("due_before", type_=Task.due_date.type))
    if due_after:
        stmt = stmt.where(c.due_date >= bindparam("due_after", type_=Task.due_date.type))
    if after:  # keyset pagination on (created_at, id), as ``schemas.paginate``
        after_at = bindparam("after_created_at", type_=Task.created_at.type)
        stmt = stmt.where(
            or_(
                c.created_at > after_at,
                and_(c.created_at == after_at, c.id > bindparam("after_id", type_=Uuid())),
            )
        )
    return stmt.order_by(c.created_at, c.id).limit(bindparam("limit"))


def _scope(ctx: Acting) -> dict[str, Any]:
    principal = ctx.me()
    params: dict[str, Any] = {"tenant_id": ctx.tenant_id}
    if principal.project_scoped:
        params["user_id"] = principal.user_id
    return params


async def task_with_assignees(
    ctx: Acting, reader: Reader, task_id: uuid.UUID
) -> tuple[Row, list[uuid.UUID]]:
    """The task (404 if it does not exist here or is not visible) and its assignee ids."""
    params = _scope(ctx)
    row = await reader.row(_by_id(ctx.me().project_scoped), task_id=task_id, **params)
    if row is None:
        raise NotFound("No such task.")
    if reader.inline_arrays:
        return row, list(row["assignee_ids"])
    assignees = await reader.rows(ASSIGNEES_OF_ONE, tenant_id=params["tenant_id"], task_id=task_id)
    return row, [a["user_id"] for a in assignees]


async def task_page(
    ctx: Acting,
    reader: Reader,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    project_id: uuid.UUID | None,
    status: str | None,
    priority: str | None,
    assignee_id: uuid.UUID | None,
    due_before: date | None,
    due_after: date | None,
) -> tuple[list[Row], dict[Any, list[uuid.UUID]]]:
    """Up to ``limit + 1`` tasks in (created_at, id) order and the assignees of the first
    ``limit`` (the extra row only says that there is a next page)."""
    params = _scope(ctx)
    filters = {
        "project_id": project_id,
        "status": status,
        "priority": priority,
        "assignee_id": assignee_id,
        "due_before": due_before,
        "due_after": due_after,
    }
    given = {k: v for k, v in filters.items() if v is not None}
    if after is not None:
        given["after_created_at"], given["after_id"] = after
    query = _page(
        ctx.me().project_scoped,
        project="project_id" in given,
        status="status" in given,
        priority="priority" in given,
        assignee="assignee_id" in given,
        due_before="due_before" in given,
        due_after="due_after" in given,
        after=after is not None,
    )
    rows = list(await reader.rows(query, limit=limit + 1, **params, **given))
    ids = [r["id"] for r in rows[:limit]]
    if reader.inline_arrays:
        return rows, {r["id"]: list(r["assignee_ids"]) for r in rows[:limit]}
    assignees: dict[Any, list[uuid.UUID]] = {i: [] for i in ids}
    if ids:
        found = await reader.rows(ASSIGNEES_OF_PAGE, tenant_id=params["tenant_id"], task_ids=ids)
        for a in found:
            assignees[a["task_id"]].append(a["user_id"])
    return rows, assignees
