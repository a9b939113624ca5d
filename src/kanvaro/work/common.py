"""Helpers shared by the work resources: visibility, lookups, optimistic concurrency."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from fastapi import Response
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting as Ctx
from kanvaro.errors import NotFound, PreconditionFailed, PreconditionRequired
from kanvaro.work.models import Project, ProjectMember

M = TypeVar("M")


def member_project_ids(ctx: Ctx) -> Select[Any]:
    return select(ProjectMember.project_id).where(ProjectMember.user_id == ctx.principal.user_id)


def visible_projects(ctx: Ctx, stmt: Select[Any], project_column: Any) -> Select[Any]:
    """Project-scoped roles (team_member, client, viewer) see only their projects' data."""
    if ctx.principal.project_scoped:
        return stmt.where(project_column.in_(member_project_ids(ctx)))
    return stmt


async def get_project(ctx: Ctx, project_id: uuid.UUID) -> Project:
    """The project, if it exists in this tenant and the caller may see it (else 404)."""
    stmt = visible_projects(ctx, select(Project).where(Project.id == project_id), Project.id)
    project = (await ctx.db.execute(stmt)).scalar_one_or_none()
    if project is None:
        raise NotFound("No such project.")
    return project


async def get_or_404(db: AsyncSession, stmt: Select[Any], what: str) -> Any:
    row = (await db.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No such {what}.")
    return row


def etag(version: int) -> str:
    return f'"v{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def check_version(current: int, body_version: int | None, if_match: str | None) -> None:
    """Updates must say which version they change (body ``version`` or ``If-Match``)."""
    expected: int | None = body_version
    if if_match is not None:
        tag = if_match.strip().removeprefix("W/")
        if tag == "*":
            expected = current if expected is None else expected
        else:
            try:
                expected = int(tag.strip('"').removeprefix("v"))
            except ValueError:
                raise PreconditionFailed(
                    "If-Match does not name a version of this resource."
                ) from None
    if expected is None:
        raise PreconditionRequired(
            "Send the version you are changing: the `version` field or an If-Match header.",
            errors=[{"field": "version", "in": "body", "message": "required for updates"}],
        )
    if expected != current:
        raise PreconditionFailed(
            f"The resource is at version {current}; your change was based on version {expected}.",
            currentVersion=current,
        )


def stamp(obj: Any, ctx: Ctx, *, created: bool = False) -> None:
    if created:
        obj.created_by = ctx.actor_id
    obj.updated_by = ctx.actor_id
