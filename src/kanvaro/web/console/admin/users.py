"""``/t/{slug}/admin/users``: the people of the organization, their invitations and roles.

The list runs the API's own listing (``GET /api/v1/users``: its filters and who-sees-whom
rule); every form runs the action of the matching API route, with its permission:

* invite (``POST /api/v1/users`` without a password): ``team:invite`` or ``user:manage``;
* change the role, reactivate (``PATCH``): ``user:manage`` (checked by the action);
* deactivate, delete (``PATCH isActive=false``, ``DELETE``): ``user:manage`` or ``team:remove``;
* send the invitation again (``POST .../invitation``): ``team:invite`` or ``user:manage``;
* reset MFA (``POST .../mfa/reset``): ``user:manage`` and a recent sign-in.

Deleting a member whose invitation is pending is how an invitation is revoked: the API has
no other way, and the soft delete keeps the row for the record.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select

from kanvaro.deps import Ctx, require, require_any
from kanvaro.errors import ProblemError
from kanvaro.identity import user_routes, user_service
from kanvaro.identity.mfa import management
from kanvaro.identity.schemas import UserCreate, UserUpdate
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Role
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    page,
    parse,
    problem_of,
    redirect,
)
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()

Inviter = Annotated[Ctx, require_any(P.USER_MANAGE, P.TEAM_INVITE)]
Changer = Annotated[Ctx, require_any(P.USER_MANAGE, P.TEAM_REMOVE)]
Manager = Annotated[Ctx, require(P.USER_MANAGE)]

INVITE_FORM = ("email", "firstName", "lastName", "role")
STATUSES = {"active": True, "inactive": False}
LIST_LIMIT = 100

NOTICES.update(
    {
        "user-invited": "Invitation sent.",
        "invitation-resent": "A new invitation is on its way; earlier links no longer work.",
        "user-role-changed": "Role changed.",
        "user-deactivated": "Deactivated; every session of this person has ended.",
        "user-reactivated": "Reactivated.",
        "user-deleted": "Removed; the record stays in the audit log.",
        "mfa-reset": "Second factors reset; this person enrolls again at the next sign-in.",
    }
)


async def _role_names(ctx: Ctx) -> list[str]:
    return list((await ctx.db.execute(select(Role.name).order_by(Role.name))).scalars())


async def _users_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    invite: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    query = request.query_params
    q = (query.get("q") or "").strip()[:100]
    role = (query.get("role") or "").strip()[:50]
    status = query.get("status") or ""
    roles = await _role_names(ctx)
    role = role if role in roles else ""
    listed = await user_routes.list_users(
        ctx,
        cursor=None,
        limit=LIST_LIMIT,
        role=role or None,
        is_active=STATUSES.get(status),
        q=q or None,
        phone=None,
    )
    users = listed["items"]
    if status == "pending":
        users = [u for u in users if u.invitation_pending]
    return page(
        request,
        "admin/users.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        users=users,
        more=listed["nextCursor"] is not None,
        roles=roles,
        pending=[u for u in listed["items"] if u.invitation_pending],
        filters={
            "q": q,
            "role": role,
            "status": status if status in {*STATUSES, "pending"} else "",
        },
        problem=problem,
        invite=invite or dict.fromkeys(INVITE_FORM, ""),
    )


@router.get("/t/{slug}/admin/users")
async def users_page(slug: Slug, ctx: Inviter, request: Request) -> Response:
    return await _users_page(request, ctx, slug)


@router.post("/t/{slug}/admin/users/invite")
async def invite_user(slug: Slug, ctx: Inviter, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *INVITE_FORM)
    try:
        body = parse(UserCreate, form)  # no password: an invitation
        await attempt(ctx, user_service.create_member(ctx, body))
    except ProblemError as exc:
        return await _users_page(request, ctx, slug, problem=problem_of(exc, "invite"), invite=form)
    return redirect(slug, "/admin/users", "user-invited")


async def _change(
    request: Request, ctx: Ctx, slug: str, user_id: uuid.UUID, body: dict[str, Any], notice: str
) -> Response:
    await page_tenant(ctx, slug)
    user = await user_routes._user(ctx, user_id)  # 404 for anyone the caller may not see
    try:
        data = parse(UserUpdate, {**body, "version": user.version})
        await attempt(ctx, user_service.update_member(ctx, user, data, None))
    except ProblemError as exc:
        return await _users_page(request, ctx, slug, problem=problem_of(exc, str(user_id)))
    return redirect(slug, "/admin/users", notice)


@router.post("/t/{slug}/admin/users/{user_id}/role")
async def change_role(slug: Slug, user_id: uuid.UUID, ctx: Changer, request: Request) -> Response:
    form = fields(await request.form(), "role")
    return await _change(request, ctx, slug, user_id, {"role": form["role"]}, "user-role-changed")


@router.post("/t/{slug}/admin/users/{user_id}/deactivate")
async def deactivate(slug: Slug, user_id: uuid.UUID, ctx: Changer, request: Request) -> Response:
    return await _change(request, ctx, slug, user_id, {"isActive": False}, "user-deactivated")


@router.post("/t/{slug}/admin/users/{user_id}/reactivate")
async def reactivate(slug: Slug, user_id: uuid.UUID, ctx: Changer, request: Request) -> Response:
    return await _change(request, ctx, slug, user_id, {"isActive": True}, "user-reactivated")


@router.post("/t/{slug}/admin/users/{user_id}/invitation")
async def resend(slug: Slug, user_id: uuid.UUID, ctx: Inviter, request: Request) -> Response:
    await page_tenant(ctx, slug)
    user = await user_routes._user(ctx, user_id)
    try:
        await attempt(ctx, user_service.resend_invitation(ctx, user))
    except ProblemError as exc:
        return await _users_page(request, ctx, slug, problem=problem_of(exc, str(user_id)))
    return redirect(slug, "/admin/users", "invitation-resent")


@router.post("/t/{slug}/admin/users/{user_id}/delete")
async def delete(slug: Slug, user_id: uuid.UUID, ctx: Changer, request: Request) -> Response:
    await page_tenant(ctx, slug)
    user = await user_routes._user(ctx, user_id)
    try:
        await attempt(ctx, user_service.delete_member(ctx, user))
    except ProblemError as exc:
        return await _users_page(request, ctx, slug, problem=problem_of(exc, str(user_id)))
    return redirect(slug, "/admin/users", "user-deleted")


@router.post("/t/{slug}/admin/users/{user_id}/mfa-reset")
async def mfa_reset(slug: Slug, user_id: uuid.UUID, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    await user_routes._user(ctx, user_id)
    try:
        await attempt(ctx, management.reset(ctx, user_id))
    except ProblemError as exc:
        return await _users_page(request, ctx, slug, problem=problem_of(exc, str(user_id)))
    return redirect(slug, "/admin/users", "mfa-reset")
