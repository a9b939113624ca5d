"""``/t/{slug}/account``: my profile, my password, my data export.

The profile shows what the account holds; its name can be changed where the API's
``PATCH /api/v1/users/{userId}`` lets the person change it (``user_service.update_member``
asks for ``user:manage``, so for most people the profile is read-only). The password form
runs ``account.change_password`` as ``POST /api/v1/auth/password`` does (current password
again, the tenant's password policy, every other session ends). The data export is the GDPR
export of ``GET /api/v1/users/{userId}/export``, streamed as a download (the cookie session
carries the request; nothing runs in the background, so there is no progress to show).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, own_account
from kanvaro.errors import ProblemError, Unprocessable
from kanvaro.identity import account, user_service
from kanvaro.identity.schemas import PasswordChangeIn, UserUpdate
from kanvaro.tenancy.models import Role
from kanvaro.web.console.account.common import attempt, redirect
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.signin.common import Slug, field_errors, parse
from kanvaro.web.console.templating import NOTICES, render
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Own = Annotated[Ctx, own_account()]

NOTICES.update(
    {
        "password-changed": "Your password is changed. Your other sessions have ended.",
        "profile-saved": "Your profile is saved.",
    }
)


async def _page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    status: int = 200,
    problem: dict[str, object] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    user = await account.own_row(ctx)
    role = await ctx.db.get(Role, user.role_id) if user.role_id else None
    return render(
        request,
        "account/index.html",
        ctx=ctx,
        status=status,
        tenant=tenant,
        user=user,
        role=role.name if role else None,
        may_edit=ctx.me().has("user:manage"),
        export_url=f"/api/v1/users/{user.id}/export?format=zip",
        problem=problem,
    )


def _problem(exc: ProblemError, form: str) -> dict[str, object]:
    return {"form": form, "detail": exc.detail, "fields": field_errors(exc.errors)}


@router.get("/t/{slug}/account")
async def account_page(slug: Slug, ctx: Own, request: Request) -> Response:
    return await _page(request, ctx, slug)


@router.post("/t/{slug}/account/profile")
async def save_profile(slug: Slug, ctx: Own, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "firstName", "lastName")
    try:
        user = await account.own_row(ctx)
        body = parse(UserUpdate, {**form, "version": user.version})
        await attempt(ctx, user_service.update_member(ctx, user, body, None))
    except ProblemError as exc:
        return await _page(request, ctx, slug, status=exc.status, problem=_problem(exc, "profile"))
    return redirect(slug, "/account", "profile-saved")


@router.post("/t/{slug}/account/password")
async def change_password(slug: Slug, ctx: Own, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "currentPassword", "newPassword", "repeat")
    try:
        if form["newPassword"] != form["repeat"]:
            raise Unprocessable(
                "The two new passwords differ.",
                errors=[{"field": "repeat", "in": "body", "message": "differs from the new one"}],
            )
        body = parse(
            PasswordChangeIn,
            {"currentPassword": form["currentPassword"], "newPassword": form["newPassword"]},
        )
        await attempt(
            ctx,
            account.change_password(
                ctx, current_password=body.current_password, new_password=body.new_password
            ),
        )
    except ProblemError as exc:
        return await _page(request, ctx, slug, status=exc.status, problem=_problem(exc, "password"))
    return redirect(slug, "/account", "password-changed")
