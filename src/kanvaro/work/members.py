"""Project membership actions: add, change the project role of, and remove a member.

Membership is a permissions change (it decides who sees a project's data and, with the
``manager`` project role, who assigns its tasks), so each action is audited under the
``permissions`` category. The route handlers in :mod:`kanvaro.work.projects` only call these.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.audit import service as audit
from kanvaro.errors import Conflict, NotFound
from kanvaro.identity.models import User
from kanvaro.work.common import check_project, check_version, get_or_404, stamp
from kanvaro.work.models import MEMBER_FIELDS, ProjectMember


async def _record(
    ctx: Acting, action: str, member: ProjectMember, before: object, after: object, **extra: str
) -> None:
    await ctx.record(
        f"api:project_member:{action}",
        category="permissions",
        resource_type="project_member",
        resource_id=member.id,
        changes={**audit.diff(before, after), **extra},  # type: ignore[arg-type]
    )


async def get_member(ctx: Acting, project_id: uuid.UUID, member_id: uuid.UUID) -> ProjectMember:
    await check_project(ctx, project_id)
    return await get_or_404(
        ctx.db,
        select(ProjectMember).where(
            ProjectMember.id == member_id, ProjectMember.project_id == project_id
        ),
        "member",
    )


async def add_member(
    ctx: Acting, project_id: uuid.UUID, user_id: uuid.UUID, project_role: str
) -> ProjectMember:
    await check_project(ctx, project_id)
    # A scoped query: a user of another tenant is "unknown", never "forbidden".
    if not (await ctx.db.execute(select(User.id).where(User.id == user_id))).first():
        raise NotFound(
            "No such user.", errors=[{"field": "userId", "in": "body", "message": "unknown user"}]
        )
    exists = await ctx.db.execute(
        select(ProjectMember.id).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )
    if exists.first():
        raise Conflict(
            "The user is already a member of this project.",
            errors=[{"field": "userId", "in": "body", "message": "already a member"}],
        )
    return await _add(ctx, project_id, user_id, project_role)


async def _add(
    ctx: Acting, project_id: uuid.UUID, user_id: uuid.UUID, project_role: str
) -> ProjectMember:
    member = ProjectMember(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        project_id=project_id,
        user_id=user_id,
        project_role=project_role,
    )
    stamp(member, ctx, created=True)
    ctx.db.add(member)
    await ctx.db.flush()
    await _record(ctx, "create", member, None, audit.snapshot(member, MEMBER_FIELDS))
    return member


async def add_creator(ctx: Acting, project_id: uuid.UUID) -> ProjectMember | None:
    """A project-scoped creator manages the project he made (else he could not even see it).

    Others (the admin, a project manager) see every project already; they become a project's
    ``manager`` member only when added, so membership lists stay what people set them to.
    """
    principal = ctx.principal
    if principal is None or not principal.project_scoped or principal.is_super_admin:
        return None
    return await _add(ctx, project_id, principal.user_id, "manager")


async def update_member(
    ctx: Acting,
    member: ProjectMember,
    project_role: str,
    *,
    version: int | None,
    if_match: str | None,
) -> ProjectMember:
    check_version(member.version, version, if_match)
    before = audit.snapshot(member, MEMBER_FIELDS)
    member.project_role = project_role
    stamp(member, ctx)
    await ctx.db.flush()
    await _record(ctx, "update", member, before, audit.snapshot(member, MEMBER_FIELDS))
    return member


async def remove_member(ctx: Acting, member: ProjectMember, *, via: str | None = None) -> None:
    before = audit.snapshot(member, MEMBER_FIELDS)
    await ctx.db.delete(member)
    await ctx.db.flush()
    await _record(ctx, "delete", member, before, None, **({"via": via} if via else {}))
