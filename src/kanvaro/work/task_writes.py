"""A new task as one PostgreSQL statement, its audit entry included.

Through the ORM a secured create was five round trips (``BEGIN``, the project check, the task's
``INSERT``, the audit entry's ``INSERT``, ``COMMIT``) and most of its CPU was the ORM's unit of
work around them (issue 9). Here the project check, the task and its pending audit entry are
one data-modifying ``WITH`` statement that PostgreSQL runs, and commits, on its own: the entry
exists if and only if the task does (the entry's ``INSERT`` selects from the task's
``RETURNING``), and a project that is not there, or not visible to a project-scoped caller,
inserts nothing. It runs on a pooled connection under the tenant's RLS context
(``Database.statement_writer``), so row-level security binds it as it binds the ORM's writes.

The ORM path in ``kanvaro.work.tasks`` stays the portable one (SQLite) and the one for a create
with assignees, whose checks need queries of their own.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from sqlalchemy import bindparam, insert, select

from kanvaro.acting import Acting
from kanvaro.audit import service as audit
from kanvaro.db import run_after_commit, utcnow
from kanvaro.errors import NotFound
from kanvaro.reads import Query, Row
from kanvaro.work.models import Project, Task
from kanvaro.work.task_reads import TENANT, visible

TASK_TABLE = Task.__table__
TASK_COLUMNS = tuple(c.name for c in TASK_TABLE.columns)


def _task_param(name: str) -> Any:
    # The tenant is the same parameter as the project check's (task_reads.TENANT).
    if name == "tenant_id":
        return TENANT
    return bindparam(f"task_{name}", type_=TASK_TABLE.c[name].type)


@cache
def create_query(scoped: bool) -> Query:
    """``WITH project AS (the visible project), task AS (INSERT ... SELECT ... FROM project
    RETURNING *), entry AS (INSERT INTO audit_pending ... WHERE EXISTS (task)) SELECT * FROM
    task``. ``scoped``: the caller sees only the projects he is a member of."""
    project = select(Project.id).where(
        Project.tenant_id == TENANT, Project.id == _task_param("project_id")
    )
    if scoped:
        project = project.where(visible(Project.id))
    project_cte = project.cte("project")
    values = [
        project_cte.c.id if name == "project_id" else _task_param(name) for name in TASK_COLUMNS
    ]
    task_cte = (
        insert(TASK_TABLE)
        .from_select(TASK_COLUMNS, select(*values).select_from(project_cte))
        .returning(*TASK_TABLE.columns)
        .cte("task")
    )
    return Query(select(task_cte).add_cte(audit.insert_pending_after(task_cte)))


def may_create_in_one_statement(ctx: Acting, assignee_ids: list[uuid.UUID]) -> bool:
    """Whether this create can be one statement: PostgreSQL, no assignees to check, a person
    acting, and nothing of the request's own ORM transaction begun yet (the statement commits
    on its own, so it must not be a part of a larger change)."""
    return (
        not assignee_ids
        and ctx.principal is not None
        and ctx.principal.tenant_id is not None
        and ctx.services.db.writes_in_one_statement
        and not ctx.db.in_transaction()
        and not ctx.db.info.get("kanvaro_on_commit")
    )


async def create(ctx: Acting, fields: dict[str, Any], snapshot: dict[str, Any]) -> Row:
    """Insert the task (``fields``: its API fields) and its ``api:task:create`` entry, whose
    ``after`` is ``snapshot``; the task's row as stored. 404 when the project is not there
    for this caller."""
    principal = ctx.me()
    tenant_id = ctx.tenant_id
    now = utcnow()
    task_id = uuid.uuid4()
    row = {
        **fields,
        "id": task_id,
        "tenant_id": tenant_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "created_by": principal.user_id,
        "updated_by": principal.user_id,
    }
    pending = audit.pending_entry(
        action="api:task:create",
        category="business_operations",
        tenant_id=tenant_id,
        context=ctx.audit,
        resource_type="task",
        resource_id=task_id,
        changes=audit.diff(None, snapshot),
    )
    params: dict[str, Any] = {f"task_{name}": row[name] for name in TASK_COLUMNS}
    params["tenant_id"] = tenant_id
    params.update(pending.binds())
    params["user_id"] = principal.user_id
    db = ctx.services.db
    async with db.statement_writer(tenant_id=tenant_id) as writer:
        stored = await writer.row(create_query(principal.project_scoped), **params)
    db.outage.up()  # a statement committed: the database answers again
    if stored is None:
        raise NotFound("No such project.")
    await run_after_commit([pending.after_commit(db.engine)])
    return stored
