"""Helpers of the work resources: project visibility and lookups.

The helpers every domain shares live in ``kanvaro.resources`` (framework-free; re-exported
here for the work modules) and ``kanvaro.http_helpers`` (If-Match, ETag: routes import those
themselves, so the work services stay free of the web framework).
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import Select, select

from kanvaro.acting import Acting as Ctx
from kanvaro.errors import NotFound
from kanvaro.resources import check_version, escape_like, get_or_404, stamp
from kanvaro.work.models import Project, ProjectMember

M = TypeVar("M")

__all__ = [
    "check_project",
    "check_version",
    "escape_like",
    "get_or_404",
    "get_project",
    "member_project_ids",
    "stamp",
    "visible_projects",
]


def member_project_ids(ctx: Ctx) -> Select[Any]:
    return select(ProjectMember.project_id).where(ProjectMember.user_id == ctx.principal.user_id)


def visible_projects(ctx: Ctx, stmt: Select[Any], project_column: Any) -> Select[Any]:
    """Project-scoped roles (team_member, client, viewer) see only their projects' data."""
    if ctx.principal.project_scoped:
        return stmt.where(project_column.in_(member_project_ids(ctx)))
    return stmt


async def check_project(ctx: Ctx, project_id: uuid.UUID) -> None:
    """404 unless the project exists in this tenant and the caller may see it; reads its id
    only (no entity to build) for the writes that just need it to be there."""
    stmt = visible_projects(ctx, select(Project.id).where(Project.id == project_id), Project.id)
    if (await ctx.db.execute(stmt)).first() is None:
        raise NotFound("No such project.")


async def get_project(ctx: Ctx, project_id: uuid.UUID) -> Project:
    """The project, if it exists in this tenant and the caller may see it (else 404)."""
    stmt = visible_projects(ctx, select(Project).where(Project.id == project_id), Project.id)
    project = (await ctx.db.execute(stmt)).scalar_one_or_none()
    if project is None:
        raise NotFound("No such project.")
    return project
