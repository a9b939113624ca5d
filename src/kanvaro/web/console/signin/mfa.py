"""The sign-in's second step as a page: ``/t/{slug}/sign-in/mfa``.

The password form (``session_pages``) leaves the challenge id in the HttpOnly step cookie and
sends the browser here. Each usable method gets a plain form (an authenticator app's code, a
backup code, an emailed or texted code with a "send me a code" button) posting to the same
step as ``POST /api/v1/auth/mfa/verify`` (``auth.complete_second_step``); a security key or
passkey needs the browser's WebAuthn API, so its button is a script module talking to the two
JSON routes here, which read the challenge from the same cookie (it never reaches the page).
Success answers the session cookies exactly as ``session_pages.signed_in_redirect`` does and
clears the step cookie; a wrong code shows the step again; a challenge that is spent, expired
or out of attempts sends the browser back to sign-in with a notice.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import audit_context, own_origins, public_db, services_of
from kanvaro.errors import ProblemError, Unauthorized
from kanvaro.identity import auth
from kanvaro.identity.auth_routes import as_cookies, sign_in_request
from kanvaro.identity.mfa import flow, webauthn_signin
from kanvaro.identity.mfa.models import WEBAUTHN, MfaChallenge
from kanvaro.identity.mfa.requirement import counted_methods
from kanvaro.identity.mfa.schemas import MfaSendIn, MfaVerifyIn
from kanvaro.identity.sessions import cookies
from kanvaro.web.console import register_asset
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router, safe_next, tenant_path
from kanvaro.web.console.session_pages import mfa_step_cookie, signed_in_redirect
from kanvaro.web.console.signin.common import Slug, field_errors, parse, step_challenge
from kanvaro.web.console.templating import NOTICES, render
from kanvaro.web.console.tenant import active_tenant

router = console_router()
PublicDb = Annotated[AsyncSession, public_db()]

register_asset("signin-webauthn.js")
register_asset("signin-passkey.js")

NOTICES.update(
    {
        "mfa-expired": "The sign-in step has expired or was used up. Sign in again.",
        "code-sent": "A code is on its way. It works for a few minutes.",
    }
)

LABELS = {
    "totp": "Authenticator app",
    "email": "A code by email",
    "sms": "A code by text message",
    "webauthn": "Security key or passkey",
    "backup_code": "Backup code",
}
SENDS_CODE = {"email", "sms"}


def _target(request: Request, slug: str, value: str | None = None) -> str:
    raw = value if value is not None else request.query_params.get("next")
    return safe_next(raw, tenant_path(slug.lower()))


def _start_over(slug: str) -> Response:
    """Back to the password form: the step's cookie goes, its challenge is of no more use."""
    response = RedirectResponse(
        f"{tenant_path(slug.lower(), '/sign-in')}?notice=mfa-expired",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
    response.headers.append("set-cookie", mfa_step_cookie("", max_age=0))
    return response


async def _live_challenge(request: Request, slug: str) -> MfaChallenge | None:
    """The step's challenge while it can still be answered, for this address's tenant."""
    challenge_id = step_challenge(request)
    if challenge_id is None:
        return None
    services = services_of(request)
    # Read in a transaction of its own: the request's is left untouched for the step itself
    # (which counts its attempt in yet another one).
    async with services.db.session(all_tenants=True) as check:
        tenant = await active_tenant(check, slug)
        challenge = await check.get(MfaChallenge, challenge_id)
        if challenge is not None:
            check.expunge(challenge)
    now = services.clock.now()
    if (
        tenant is None
        or challenge is None
        or challenge.tenant_id != tenant.id
        or challenge.purpose != "sign_in"
        or challenge.used_at is not None
        or _aware(challenge.expires_at, now) <= now
        or challenge.attempts >= flow.MAX_ATTEMPTS
        or challenge.user_id is None
    ):
        return None
    return challenge


def _aware(value: Any, now: Any) -> Any:
    return value if value.tzinfo else value.replace(tzinfo=now.tzinfo)


async def _step_page(
    request: Request,
    db: AsyncSession,
    slug: str,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    chosen: str | None = None,
    target: str | None = None,
) -> Response:
    challenge = await _live_challenge(request, slug)
    if challenge is None:
        return _start_over(slug)
    assert challenge.user_id is not None
    services = services_of(request)
    policy = await flow.mfa_policy(services, challenge.tenant_id, db)
    _, methods = await counted_methods(db, challenge.user_id, policy)
    tenant = await active_tenant(db, slug)
    wanted = chosen or request.query_params.get("method")
    return render(
        request,
        "signin/mfa.html",
        status=status,
        tenant=tenant,
        methods=list(methods),
        labels=LABELS,
        sends_code=SENDS_CODE,
        chosen=wanted if wanted in methods else (methods[0] if methods else None),
        next=target or _target(request, slug),
        error=error,
        errors=errors or {},
    )


@router.get("/t/{slug}/sign-in/mfa")
async def mfa_page(slug: Slug, request: Request, db: PublicDb) -> Response:
    return await _step_page(request, db, slug)


@router.post("/t/{slug}/sign-in/mfa")
async def mfa_verify(slug: Slug, request: Request, db: PublicDb) -> Response:
    cookies.refuse_cross_site(request.headers, own_origins(request))
    form = fields(await request.form(), "method", "code", "next")
    target = _target(request, slug, form["next"])
    if await _live_challenge(request, slug) is None:
        return _start_over(slug)
    challenge_id = step_challenge(request)
    method = form["method"]
    try:
        body = parse(
            MfaVerifyIn, {"sessionId": str(challenge_id), "code": form["code"], "method": method}
        )
        pair = await auth.complete_second_step(
            services_of(request),
            db,
            challenge_id=body.session_id,
            method=body.method,
            code=body.code,
            context=audit_context(request),
            client=sign_in_request(request, None),
        )
    except ProblemError as exc:
        await db.rollback()
        if isinstance(exc, Unauthorized) and exc.detail == flow.INVALID_CHALLENGE:
            return _start_over(slug)
        errors = field_errors(exc.errors)
        message = "Enter the code." if "code" in errors else exc.detail
        return await _step_page(
            request, db, slug, status=exc.status, error=message, errors=errors, chosen=method,
            target=target,
        )  # fmt: skip
    return signed_in_redirect(request, pair, target)


@router.post("/t/{slug}/sign-in/mfa/send")
async def mfa_send(slug: Slug, request: Request, db: PublicDb) -> Response:
    """The "send me a code" button of the email and SMS methods."""
    cookies.refuse_cross_site(request.headers, own_origins(request))
    form = fields(await request.form(), "method", "next")
    target = _target(request, slug, form["next"])
    if await _live_challenge(request, slug) is None:
        return _start_over(slug)
    try:
        body = parse(
            MfaSendIn, {"sessionId": str(step_challenge(request)), "method": form["method"]}
        )
        await auth.send_second_step_code(
            services_of(request), db, challenge_id=body.session_id, method=body.method
        )
    except ProblemError as exc:
        await db.rollback()
        if isinstance(exc, Unauthorized):
            return _start_over(slug)
        return await _step_page(
            request, db, slug, status=exc.status, error=exc.detail, chosen=form["method"],
            target=target,
        )  # fmt: skip
    page = tenant_path(slug.lower(), "/sign-in/mfa")
    return RedirectResponse(
        f"{page}?method={quote(body.method)}&notice=code-sent&next={quote(target, safe='/')}",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )


def _json_problem(exc: ProblemError) -> JSONResponse:
    """The scripts' JSON routes answer a refusal in JSON (a console route would answer a page,
    or for a 401 a redirect the script's fetch would follow)."""
    return JSONResponse(
        {"title": exc.title, "detail": exc.detail, "status": exc.status},
        status_code=exc.status,
        media_type="application/problem+json",
        headers={"Cache-Control": "no-store"},
    )


@router.post("/t/{slug}/sign-in/mfa/webauthn/options")
async def webauthn_options(slug: Slug, request: Request, db: PublicDb) -> Response:
    """Assertion options for the step's challenge (as ``/api/v1/auth/webauthn/authenticate/
    options``), without the challenge id: the cookie carries it."""
    cookies.refuse_cross_site(request.headers, own_origins(request))
    challenge = await _live_challenge(request, slug)
    if challenge is None:
        return _json_problem(Unauthorized(flow.INVALID_CHALLENGE))
    try:
        options = await webauthn_signin.second_factor_options(
            services_of(request), db, challenge_id=challenge.id
        )
    except ProblemError as exc:
        await db.rollback()
        return _json_problem(exc)
    return JSONResponse({"publicKey": options["publicKey"]}, headers={"Cache-Control": "no-store"})


@router.post("/t/{slug}/sign-in/mfa/webauthn/verify")
async def webauthn_verify(slug: Slug, request: Request, db: PublicDb) -> Response:
    """The authenticator's answer: the same step as ``.../authenticate/verify``; the session
    cookies as after any console sign-in, and where to go next."""
    cookies.refuse_cross_site(request.headers, own_origins(request))
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("credential"), dict):
        return JSONResponse(
            {"detail": "The authenticator's answer is missing.", "status": 422}, status_code=422
        )
    target = _target(request, slug, str(body.get("next") or ""))
    challenge_id: uuid.UUID | None = step_challenge(request)
    if challenge_id is None or await _live_challenge(request, slug) is None:
        return _json_problem(Unauthorized(flow.INVALID_CHALLENGE))
    try:
        pair = await auth.complete_second_step(
            services_of(request),
            db,
            challenge_id=challenge_id,
            method=WEBAUTHN,
            code=json.dumps(body["credential"]),
            context=audit_context(request),
            client=sign_in_request(request, None),
        )
    except ProblemError as exc:
        await db.rollback()
        return _json_problem(exc)
    response = JSONResponse({"next": target}, headers={"Cache-Control": "no-store"})
    as_cookies(request, response, pair)
    response.headers.append("set-cookie", mfa_step_cookie("", max_age=0))
    return response
