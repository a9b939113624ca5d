"""Accepting an invitation: ``/invitation`` (the page), then sign-in at the tenant's address.

The invitation's token is in the link's fragment for the reason ``password.py`` gives; the
page's script (``signin-token.js``) copies it into the plain form's hidden field. The form
posts to the same action as ``POST /api/v1/auth/invitations/accept``
(``identity.account.accept_invitation``). The new password takes effect when that request's
transaction commits, so the person is sent to the tenant's sign-in page afterwards (with a
notice) rather than signed in by the same request.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import audit_context, own_origins, public_db, services_of
from kanvaro.errors import ProblemError
from kanvaro.identity import account
from kanvaro.identity.models import Invitation
from kanvaro.identity.schemas import AcceptInvitationIn
from kanvaro.identity.sessions import cookies
from kanvaro.tenancy.models import Tenant
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.signin.common import field_errors, parse
from kanvaro.web.console.templating import NOTICES, render

router = console_router()
PublicDb = Annotated[AsyncSession, public_db()]

INVITATION_PAGE = "/invitation"
NOTICES.update({"invitation-accepted": "Your account is active. Sign in with your new password."})


def _form(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    token: str = "",
) -> Response:
    return render(
        request,
        "signin/invitation.html",
        status=status,
        error=error,
        errors=errors or {},
        token=token,
    )


@router.get(INVITATION_PAGE)
async def invitation_page(request: Request, db: PublicDb) -> Response:
    return _form(request)


@router.post(INVITATION_PAGE)
async def invitation_submit(request: Request, db: PublicDb) -> Response:
    cookies.refuse_cross_site(request.headers, own_origins(request))
    form = fields(await request.form(), "token", "password", "repeat")
    if not form["token"]:
        return _form(
            request,
            status=400,
            error="This page holds no invitation. Open the link from your invitation email.",
        )
    if form["password"] != form["repeat"]:
        return _form(
            request,
            status=422,
            error="The two passwords differ.",
            errors={"repeat": "differs from the password"},
            token=form["token"],
        )
    try:
        body = parse(AcceptInvitationIn, {"token": form["token"], "password": form["password"]})
        digest = hashlib.sha256(body.token.encode()).hexdigest()
        async with services_of(request).db.session(all_tenants=True) as lookup:
            slug = await lookup.scalar(
                select(Tenant.slug)
                .join(Invitation, Invitation.tenant_id == Tenant.id)
                .where(Invitation.token_hash == digest)
            )
        await account.accept_invitation(
            services_of(request),
            db,
            token=body.token,
            password=body.password,
            context=audit_context(request),
        )
    except ProblemError as exc:
        await db.rollback()
        errors = field_errors(exc.errors)
        invalid = exc.status == 401 or "token" in errors
        return _form(
            request,
            status=exc.status,
            error=exc.detail,
            errors=errors,
            token="" if invalid else form["token"],
        )
    return RedirectResponse(
        f"{tenant_path(slug, '/sign-in') if slug else '/'}?notice=invitation-accepted",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
