"""Signing in and out of the console with plain forms, and the silent refresh.

Sign-in posts the form to the same steps as ``POST /t/{slug}/auth/login`` (identity/auth.py)
and answers with the browser session's cookies (``__Host-`` access, refresh and CSRF), then
redirects. When a second factor is needed, the challenge id goes into a short-lived
HttpOnly cookie and the browser is sent to the MFA step; the id never appears in a page or
an address.

The silent refresh (``GET /t/{slug}/session/refresh``) is where a page whose access cookie
has expired is sent first: it spends the refresh cookie and returns to the page. It is a GET
(a redirect cannot POST), so the API's CSRF header cannot be asked for; what protects it is
that the refresh cookie is ``SameSite=Strict`` — a page on another site cannot make the
browser send it — and that a navigation the browser marks ``cross-site`` is refused anyway.
Rotating a session's tokens gives nobody anything.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import Ctx, audit_context, own_account, own_origins, public_db, services_of
from kanvaro.errors import ProblemError, Unauthorized
from kanvaro.identity import account, auth
from kanvaro.identity.auth_routes import as_cookies, sign_in_request
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.sessions import cookies
from kanvaro.identity.sso.providers import enabled_providers
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import SLUG_PATTERN, console_router, safe_next, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import active_tenant

router = console_router()

Slug = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG_PATTERN)]
PublicDb = Annotated[AsyncSession, public_db()]
OwnAccount = Annotated[Ctx, own_account()]

MFA_COOKIE = cookies.MFA_STEP_COOKIE
MFA_STEP_TTL = cookies.MFA_STEP_TTL
mfa_step_cookie = cookies.mfa_step_cookie


def signed_in_redirect(request: Request, pair: auth.TokenPair, target: str) -> Response:
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    as_cookies(request, response, pair)
    response.headers.append("set-cookie", mfa_step_cookie("", max_age=0))
    return response


async def _sign_in_page(
    request: Request, db: AsyncSession, slug: str, *, status: int = 200, error: str | None = None
) -> Response:
    tenant = await active_tenant(db, slug)
    if tenant is None:
        return render(
            request,
            "error.html",
            status=404,
            title="No such organization",
            detail="Check the address you were given.",
            errors=[],
        )
    providers = await enabled_providers(db, tenant.id)
    return render(
        request,
        "sign_in.html",
        status=status,
        tenant=tenant,
        providers=providers,
        error=error,
        email=request.query_params.get("email", "") if error is None else "",
        next=safe_next(request.query_params.get("next"), tenant_path(tenant.slug)),
    )


@router.get("/t/{slug}/sign-in")
async def sign_in_page(slug: Slug, request: Request, db: PublicDb) -> Response:
    return await _sign_in_page(request, db, slug)


@router.post("/t/{slug}/sign-in")
async def sign_in_submit(slug: Slug, request: Request, db: PublicDb) -> Response:
    # A page on another site must not sign this browser into an account of its choosing.
    cookies.refuse_cross_site(request.headers, own_origins(request))
    form = fields(await request.form(), "email", "password", "next")
    target = safe_next(form["next"], tenant_path(slug.lower()))
    try:
        outcome = await auth.login(
            services_of(request),
            db,
            email=form["email"],
            password=form["password"],
            tenant=slug,
            context=audit_context(request),
            client=sign_in_request(request, None),
        )
    except ProblemError as exc:  # wrong password, throttled, refused by risk: the same page
        message = (
            "The email or password is not right." if isinstance(exc, Unauthorized) else exc.detail
        )
        return await _sign_in_page(request, db, slug, status=exc.status, error=message)
    if isinstance(outcome, MfaStep):
        response = RedirectResponse(
            f"{tenant_path(slug.lower(), '/sign-in/mfa')}?next={quote(target, safe='/')}",
            status_code=303,
            headers={"Cache-Control": "no-store"},
        )
        response.headers.append("set-cookie", mfa_step_cookie(str(outcome.challenge_id)))
        return response
    return signed_in_redirect(request, outcome, target)


@router.get("/t/{slug}/session/refresh")
async def silent_refresh(slug: Slug, request: Request, db: PublicDb) -> Response:
    target = safe_next(request.query_params.get("next"), tenant_path(slug.lower()))
    sign_in = f"{tenant_path(slug.lower(), '/sign-in')}?next={quote(target, safe='/')}"
    token = request.cookies.get(cookies.REFRESH_COOKIE)
    cross_site = (request.headers.get("sec-fetch-site") or "").lower() == "cross-site"
    if not token or cross_site:
        return RedirectResponse(sign_in, status_code=303)
    try:
        pair = await auth.refresh(
            services_of(request), db, refresh_token=token, context=audit_context(request)
        )
    except ProblemError:
        ended = RedirectResponse(sign_in, status_code=303)
        for value in cookies.cleared_cookies():
            ended.headers.append("set-cookie", value)
        return ended
    return signed_in_redirect(request, pair, target)


@router.post("/t/{slug}/sign-out")
async def sign_out(slug: Slug, ctx: OwnAccount, request: Request) -> Response:
    await account.logout(ctx)
    ended = RedirectResponse(
        f"{tenant_path(slug.lower(), '/sign-in')}?notice=signed-out", status_code=303
    )
    for value in cookies.cleared_cookies():
        ended.headers.append("set-cookie", value)
    return ended
