"""Forgotten passwords: ``/t/{slug}/password/forgot`` asks for a link, ``/password-reset``
(where the mail's link points) sets the new password.

Asking answers the same words for every address, known or not, throttled or not, at the same
speed: the page calls ``password_reset.service.request_reset`` exactly as
``POST /api/v1/auth/password-reset`` does, whose work happens in the background, and answers
with the same redirect either way.

The link carries its token in the fragment (``#token=``): a browser sends a fragment to no
server, so the token stays out of access logs, proxies and ``Referer`` headers. The page's
small script (``signin-token.js``) copies it into the form's hidden field and drops it from
the address bar and the history; the form then posts it to this server with the new password
(``service.confirm_reset``, as ``POST /api/v1/auth/password-reset/confirm``). Without script
the page says so: a fragment cannot be read any other way, and a token in the query string
would be logged on the way in. The token is never written into a page that a GET can fetch
again (only a failed POST's answer gives it back to the form it came from).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import audit_context, own_origins, public_db, services_of
from kanvaro.errors import ProblemError
from kanvaro.identity.models import User
from kanvaro.identity.password_reset import service
from kanvaro.identity.password_reset.models import PasswordResetToken
from kanvaro.identity.password_reset.schemas import PasswordResetConfirmIn, PasswordResetIn
from kanvaro.identity.sessions import cookies
from kanvaro.tenancy.models import Tenant
from kanvaro.web.console import register_asset
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.signin.common import Slug, field_errors, parse
from kanvaro.web.console.templating import NOTICES, render
from kanvaro.web.console.tenant import active_tenant

router = console_router()
PublicDb = Annotated[AsyncSession, public_db()]

register_asset("signin-token.js")

RESET_PAGE = service.RESET_PATH  # "/password-reset", the mail's link
SENT = "If an account exists for this address, a link to choose a new password is on its way."
NOTICES.update(
    {
        "reset-sent": SENT,
        "password-reset": "Your new password is set, and you are signed out everywhere. Sign in.",
    }
)


def _unknown_tenant(request: Request) -> Response:
    return render(
        request,
        "error.html",
        status=404,
        title="No such organization",
        detail="Check the address you were given.",
        errors=[],
    )


@router.get("/t/{slug}/password/forgot")
async def forgot_page(slug: Slug, request: Request, db: PublicDb) -> Response:
    tenant = await active_tenant(db, slug)
    if tenant is None:
        return _unknown_tenant(request)
    return render(request, "signin/forgot.html", tenant=tenant, errors={}, error=None)


@router.post("/t/{slug}/password/forgot")
async def forgot_submit(slug: Slug, request: Request, db: PublicDb) -> Response:
    cookies.refuse_cross_site(request.headers, own_origins(request))
    tenant = await active_tenant(db, slug)
    if tenant is None:
        return _unknown_tenant(request)
    form = fields(await request.form(), "email")
    try:
        body = parse(PasswordResetIn, {"email": form["email"], "tenant": tenant.slug})
    except ProblemError as exc:  # only an empty or an over-long field: nothing about accounts
        return render(
            request,
            "signin/forgot.html",
            status=exc.status,
            tenant=tenant,
            errors=field_errors(exc.errors),
            error="Enter your email address.",
        )
    await service.request_reset(
        services_of(request), email=body.email, tenant=body.tenant, context=audit_context(request)
    )
    return RedirectResponse(
        f"{tenant_path(tenant.slug, '/password/forgot')}?notice=reset-sent",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )


def _reset_form(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    token: str = "",
) -> Response:
    return render(
        request, "signin/reset.html", status=status, error=error, errors=errors or {}, token=token
    )


@router.get(RESET_PAGE)
async def reset_page(request: Request, db: PublicDb) -> Response:
    return _reset_form(request)


async def _slug_of_token(request: Request, token: str) -> str | None:
    """The tenant whose sign-in page follows a reset (read before the token is spent, in a
    transaction of its own: the request's stays untouched for the action)."""
    async with services_of(request).db.session(all_tenants=True) as db:
        return await db.scalar(
            select(Tenant.slug)
            .join(User, User.tenant_id == Tenant.id)
            .join(PasswordResetToken, PasswordResetToken.user_id == User.id)
            .where(PasswordResetToken.token_hash == service.token_hash(token))
        )


@router.post(RESET_PAGE)
async def reset_submit(request: Request, db: PublicDb) -> Response:
    cookies.refuse_cross_site(request.headers, own_origins(request))
    form = fields(await request.form(), "token", "newPassword", "repeat")
    if not form["token"]:
        return _reset_form(
            request,
            status=400,
            error="This page holds no reset link. Open the link from the email again.",
        )
    if form["newPassword"] != form["repeat"]:
        return _reset_form(
            request,
            status=422,
            error="The two passwords differ.",
            errors={"repeat": "differs from the new password"},
            token=form["token"],
        )
    try:
        body = parse(
            PasswordResetConfirmIn, {"token": form["token"], "newPassword": form["newPassword"]}
        )
        slug = await _slug_of_token(request, body.token)
        await service.confirm_reset(
            services_of(request),
            db,
            token=body.token,
            new_password=body.new_password,
            context=audit_context(request),
        )
    except ProblemError as exc:
        await db.rollback()
        errors = field_errors(exc.errors)
        spent = "token" in errors
        return _reset_form(
            request,
            status=exc.status,
            error=exc.detail,
            errors=errors,
            token="" if spent else form["token"],
        )
    ended = RedirectResponse(
        f"{tenant_path(slug, '/sign-in') if slug else '/'}?notice=password-reset",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
    for value in cookies.cleared_cookies():  # every session of the account has ended
        ended.headers.append("set-cookie", value)
    return ended
