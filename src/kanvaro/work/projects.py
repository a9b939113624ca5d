"""Projects and their members: service functions (no HTTP) and the thin routers."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select

from kanvaro.audit import service as audit
from kanvaro.deps import Ctx, require
from kanvaro.errors import Conflict, Unprocessable
from kanvaro.http_helpers import set_etag
from kanvaro.schemas import Page, page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.work import members, tasks
from kanvaro.work.common import check_version, get_project, stamp, visible_projects
from kanvaro.work.models import BudgetEntry, Invoice, Project, ProjectMember, Task, TimeEntry
from kanvaro.work.schemas import (
    MemberCreate,
    MemberOut,
    MemberUpdate,
    ProjectCreate,
    ProjectOut,
    ProjectStatus,
    ProjectUpdate,
)

PROJECT_FIELDS = (
    "name",
    "description",
    "status",
    "budget_minor",
    "currency",
    "start_date",
    "end_date",
)

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


# --- service ---------------------------------------------------------------------------------


async def create_project(ctx: Ctx, data: ProjectCreate) -> Project:
    project = Project(id=uuid.uuid4(), tenant_id=ctx.tenant_id, **data.model_dump())
    stamp(project, ctx, created=True)
    ctx.db.add(project)
    await ctx.db.flush()
    # A project-scoped creator must be able to see (and manage) what he made.
    await members.add_creator(ctx, project.id)
    await ctx.record(
        "api:project:create",
        category="business_operations",
        resource_type="project",
        resource_id=project.id,
        changes=audit.diff(None, audit.snapshot(project, PROJECT_FIELDS)),
    )
    return project


async def update_project(
    ctx: Ctx, project: Project, data: ProjectUpdate, if_match: str | None
) -> Project:
    check_version(project.version, data.version, if_match)
    before = audit.snapshot(project, PROJECT_FIELDS)
    for name, value in data.model_dump(exclude_unset=True, exclude={"version"}).items():
        setattr(project, name, value)
    if project.start_date and project.end_date and project.end_date < project.start_date:
        # Input that cannot be valid is a validation error (422), like the same check on create.
        raise Unprocessable(
            "endDate must not be before startDate.",
            errors=[{"field": "endDate", "in": "body", "message": "must not be before startDate"}],
        )
    stamp(project, ctx)
    await ctx.db.flush()
    await ctx.record(
        "api:project:update",
        category="business_operations",
        resource_type="project",
        resource_id=project.id,
        changes=audit.diff(before, audit.snapshot(project, PROJECT_FIELDS)),
    )
    return project


# Records that keep a project alive (ON DELETE RESTRICT): money and logged hours are never
# deleted as a side effect; they must be removed or moved first.
KEEPERS = (("time entries", TimeEntry), ("budget entries", BudgetEntry), ("invoices", Invoice))


async def delete_project(ctx: Ctx, project: Project) -> None:
    """Delete a project with its tasks (and their comments and assignees) and memberships.

    Nothing goes by ``ON DELETE CASCADE`` unseen: each task is deleted through
    :func:`tasks.delete_task` and each membership through :func:`members.remove_member`, so
    every removed row has its own audit entry in this transaction, marked ``via`` this
    project's delete; the project's own entry comes last.
    """
    for what, model in KEEPERS:
        found = await ctx.db.execute(select(model.id).where(model.project_id == project.id))
        if found.first() is not None:
            raise Conflict(f"The project still has {what}; remove them first.")
    via = f"project:{project.id}"
    task_rows = await ctx.db.execute(
        select(Task).where(Task.project_id == project.id).order_by(Task.id)
    )
    for task in list(task_rows.scalars()):
        await tasks.delete_task(ctx, task, via=via)
    member_rows = await ctx.db.execute(
        select(ProjectMember)
        .where(ProjectMember.project_id == project.id)
        .order_by(ProjectMember.id)
    )
    for member in list(member_rows.scalars()):
        await members.remove_member(ctx, member, via=via)
    before = audit.snapshot(project, PROJECT_FIELDS)
    await ctx.db.delete(project)
    await ctx.db.flush()
    await ctx.record(
        "api:project:delete",
        category="business_operations",
        resource_type="project",
        resource_id=project.id,
        changes=audit.diff(before, None),
    )


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=Page[ProjectOut], response_model_by_alias=True)
async def list_projects(
    ctx: Annotated[Ctx, require(P.PROJECT_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: ProjectStatus | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    stmt = visible_projects(ctx, select(Project), Project.id)
    if status:
        stmt = stmt.where(Project.status == status)
    if q:
        stmt = stmt.where(Project.name.ilike(f"%{_escape_like(q)}%", escape="\\"))
    rows = (await ctx.db.execute(paginate(stmt, Project, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, ProjectOut.model_validate)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@router.post("", status_code=201, response_model=ProjectOut, response_model_by_alias=True)
async def post_project(
    body: ProjectCreate, response: Response, ctx: Annotated[Ctx, require(P.PROJECT_CREATE)]
) -> Project:
    project = await create_project(ctx, body)
    set_etag(response, project.version)
    response.headers["Location"] = f"/api/v1/projects/{project.id}"
    return project


@router.get("/{project_id}", response_model=ProjectOut, response_model_by_alias=True)
async def get_one(
    project_id: uuid.UUID, response: Response, ctx: Annotated[Ctx, require(P.PROJECT_READ)]
) -> Project:
    project = await get_project(ctx, project_id)
    set_etag(response, project.version)
    return project


@router.patch("/{project_id}", response_model=ProjectOut, response_model_by_alias=True)
async def patch_project(
    project_id: uuid.UUID,
    body: ProjectUpdate,
    response: Response,
    ctx: Annotated[Ctx, require(P.PROJECT_UPDATE)],
    if_match: IfMatch = None,
) -> Project:
    project = await update_project(ctx, await get_project(ctx, project_id), body, if_match)
    set_etag(response, project.version)
    return project


@router.delete("/{project_id}", status_code=204)
async def remove_project(
    project_id: uuid.UUID, ctx: Annotated[Ctx, require(P.PROJECT_DELETE)]
) -> Response:
    await delete_project(ctx, await get_project(ctx, project_id))
    return Response(status_code=204)


# --- members ---------------------------------------------------------------------------------


@router.get("/{project_id}/members", response_model=Page[MemberOut], response_model_by_alias=True)
async def list_members(
    project_id: uuid.UUID,
    ctx: Annotated[Ctx, require(P.PROJECT_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    await get_project(ctx, project_id)
    stmt = select(ProjectMember).where(ProjectMember.project_id == project_id)
    rows = (await ctx.db.execute(paginate(stmt, ProjectMember, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, MemberOut.model_validate)


@router.post(
    "/{project_id}/members", status_code=201, response_model=MemberOut, response_model_by_alias=True
)
async def add_member(
    project_id: uuid.UUID, body: MemberCreate, ctx: Annotated[Ctx, require(P.PROJECT_UPDATE)]
) -> ProjectMember:
    return await members.add_member(ctx, project_id, body.user_id, body.project_role)


@router.patch(
    "/{project_id}/members/{member_id}", response_model=MemberOut, response_model_by_alias=True
)
async def patch_member(
    project_id: uuid.UUID,
    member_id: uuid.UUID,
    body: MemberUpdate,
    ctx: Annotated[Ctx, require(P.PROJECT_UPDATE)],
    if_match: IfMatch = None,
) -> ProjectMember:
    member = await members.get_member(ctx, project_id, member_id)
    return await members.update_member(
        ctx, member, body.project_role, version=body.version, if_match=if_match
    )


@router.delete("/{project_id}/members/{member_id}", status_code=204)
async def remove_member(
    project_id: uuid.UUID, member_id: uuid.UUID, ctx: Annotated[Ctx, require(P.PROJECT_UPDATE)]
) -> Response:
    await members.remove_member(ctx, await members.get_member(ctx, project_id, member_id))
    return Response(status_code=204)
