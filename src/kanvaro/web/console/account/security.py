"""``/t/{slug}/account/security``: my second factors.

The same actions as the API: the overview and removal of ``identity.mfa.management``, TOTP's
setup and confirmation through ``flow.check_allowed`` and the factor (as ``POST
/api/v1/auth/mfa/setup`` and ``verify-setup``), backup codes through ``backup_codes.regenerate``
(as ``.../mfa/regenerate-backup-codes``), the step-up through ``sessions.reauth`` (as
``POST /api/v1/auth/reauth``). A passkey or security key is registered by a script with
webauthn.js's ceremony through the API's ``/api/v1/auth/webauthn/register/...`` routes.

Secrets are shown once, in the answer to the POST that made them (``no-store``, and a
reload would POST again, which makes new ones): the TOTP secret and its QR code (an SVG drawn
here with segno into an ``<img src="data:...">``), and the backup codes, with a download
link that is a ``data:`` address of the codes themselves (the server keeps only their
hashes, so nothing can serve them later). No page a GET fetches ever holds one.

An enrollment-only session (the tenant's MFA policy requires a factor the person has not set
up) reaches this page and its enrollment forms, and nothing else.
"""

from __future__ import annotations

import base64
import io
import uuid
from typing import Annotated, Any

import segno
from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, enrolling, own_account
from kanvaro.errors import ProblemError, ReauthRequired, Unprocessable
from kanvaro.identity.mfa import backup_codes, factors, flow, management
from kanvaro.identity.mfa.models import TOTP, WEBAUTHN
from kanvaro.identity.mfa.requirement import obligation
from kanvaro.identity.mfa.schemas import MfaSetupIn, MfaVerifySetupIn
from kanvaro.identity.sessions.reauth import reauthenticate
from kanvaro.web.console import register_asset
from kanvaro.web.console.account.common import attempt, redirect
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.signin.common import Slug, field_errors, parse
from kanvaro.web.console.templating import NOTICES, render
from kanvaro.web.console.tenant import page_tenant

router = console_router()
INVALID_INPUT = "Some input is invalid"  # signin.common.parse: the form did not fit the schema
Own = Annotated[Ctx, own_account()]
Enrolling = Annotated[Ctx, enrolling()]

register_asset("account-passkey.js")

NOTICES.update(
    {
        "mfa-enrollment-required": (
            "Your organization requires a second factor. Set one up to go on."
        ),
        "totp-enrolled": "Your authenticator app is set up.",
        "method-removed": "The method is removed.",
        "reauthed": "Thank you. You can change your second factors now.",
        "passkey-added": "Your security key or passkey is added.",
        "code-enrolled": "Codes by email or text message are set up.",
    }
)

CODE_METHODS = ("email", "sms")
LABELS = {
    "totp": "Authenticator app",
    "email": "Email codes",
    "sms": "Text message codes",
    "webauthn": "Security key or passkey",
    "backup_code": "Backup codes",
}


def qr_svg_data_uri(uri: str) -> str:
    """The otpauth URI as a QR code: an SVG, base64 in a ``data:`` address (the CSP allows
    ``img-src data:``)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=4, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _problem(exc: ProblemError, form: str) -> dict[str, Any]:
    return {"form": form, "detail": exc.detail, "fields": field_errors(exc.errors)}


async def _page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    status: int = 200,
    problem: dict[str, Any] | None = None,
    reauth: bool = False,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    me = ctx.me()
    overview = await management.overview(ctx, me.user_id)
    policy = await flow.mfa_policy(ctx.services, me.tenant_id, ctx.db)
    duty = await obligation(ctx.db, me.user_id, policy)
    return render(
        request,
        "account/security.html",
        ctx=ctx,
        status=status,
        tenant=tenant,
        overview=overview,
        factors=[m for m in overview["methods"] if m["method"] != "backup_code"],
        labels=LABELS,
        may_totp=duty.counts(TOTP),
        may_codes=[m for m in CODE_METHODS if duty.counts(m)],
        may_webauthn=duty.counts(WEBAUTHN),
        may_backup=policy.allows("backup_code"),
        enrollment_only=flow.ENROLLMENT_ONLY in me.auth_methods,
        problem=problem,
        reauth=reauth or request.query_params.get("reauth") == "1",
    )


async def _refused(request: Request, ctx: Ctx, slug: str, exc: ProblemError, form: str) -> Response:
    """A refusal as the page shows it; a step-up the action asks for opens the password
    prompt (a ``ReauthRequired`` is a 401, which on a console route would mean sign-in)."""
    if isinstance(exc, ReauthRequired):
        problem = {
            "form": "reauth",
            "detail": "Confirm your password first: changing second factors needs a recent sign-in.",
            "fields": {},
        }
        return await _page(request, ctx, slug, status=403, problem=problem, reauth=True)
    return await _page(request, ctx, slug, status=exc.status, problem=_problem(exc, form))


@router.get("/t/{slug}/account/security")
async def security_page(slug: Slug, ctx: Enrolling, request: Request) -> Response:
    return await _page(request, ctx, slug)


@router.post("/t/{slug}/account/security/reauth")
async def reauth(slug: Slug, ctx: Enrolling, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "password")
    try:
        if not form["password"]:
            from kanvaro.errors import Unprocessable

            raise Unprocessable(
                "Enter your password.",
                errors=[{"field": "password", "in": "body", "message": "required"}],
            )
        await attempt(ctx, reauthenticate(ctx, password=form["password"]))
    except ProblemError as exc:
        problem = _problem(exc, "reauth")
        return await _page(request, ctx, slug, status=exc.status, problem=problem, reauth=True)
    return redirect(slug, "/account/security", "reauthed")


@router.post("/t/{slug}/account/security/totp")
async def totp_setup(slug: Slug, ctx: Enrolling, request: Request) -> Response:
    """Start enrolling an authenticator app: the secret, its QR code and (with a first
    method) the backup codes, in this answer only."""
    tenant = await page_tenant(ctx, slug)
    form = fields(await request.form(), "name")
    try:
        body = parse(
            MfaSetupIn, {"method": TOTP, **({"name": form["name"]} if form["name"] else {})}
        )
        await attempt(ctx, flow.check_allowed(ctx, body.method))
        answer = await attempt(ctx, factors.get(body.method).setup(ctx, body.extras()))
    except ProblemError as exc:
        return await _refused(request, ctx, slug, exc, "totp")
    return render(
        request,
        "account/totp.html",
        ctx=ctx,
        tenant=tenant,
        method_id=answer["methodId"],
        secret=answer["secret"],
        qr=qr_svg_data_uri(answer["otpauthUri"]),
        codes=answer.get("backupCodes") or [],
        error=None,
    )


@router.post("/t/{slug}/account/security/totp/confirm")
async def totp_confirm(slug: Slug, ctx: Enrolling, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    form = fields(await request.form(), "methodId", "code")
    try:
        body = parse(
            MfaVerifySetupIn,
            {
                "method": TOTP,
                "code": form["code"],
                **({"methodId": form["methodId"]} if form["methodId"] else {}),
            },
        )
        await attempt(ctx, flow.check_allowed(ctx, body.method))
        answer = await attempt(ctx, factors.get(body.method).confirm(ctx, body.extras()))
    except ProblemError as exc:
        if isinstance(exc, ReauthRequired):
            return await _refused(request, ctx, slug, exc, "totp")
        # The secret is not shown again: the app has it already (or the person starts over).
        return render(
            request,
            "account/totp.html",
            ctx=ctx,
            status=exc.status,
            tenant=tenant,
            method_id=form["methodId"],
            secret=None,
            qr=None,
            codes=[],
            error="Enter the 6-digit code." if exc.detail.startswith(INVALID_INPUT) else exc.detail,
        )
    if answer.get("backupCodes"):
        return _codes_page(request, ctx, tenant, answer["backupCodes"], after="totp")
    return redirect(slug, "/account/security", "totp-enrolled")


def _codes_page(
    request: Request, ctx: Ctx, tenant: Any, codes: list[str], *, after: str | None = None
) -> Response:
    return render(
        request,
        "account/backup_codes.html",
        ctx=ctx,
        tenant=tenant,
        codes=codes,
        after=after,
        download="data:text/plain;charset=utf-8;base64,"
        + base64.b64encode(
            (
                "Kanvaro backup codes for " + ctx.me().email + "\n\n" + "\n".join(codes) + "\n"
            ).encode()
        ).decode("ascii"),
    )


@router.post("/t/{slug}/account/security/backup-codes")
async def regenerate_codes(slug: Slug, ctx: Own, request: Request) -> Response:
    """A new set of backup codes, shown in this answer only; the old set stops working."""
    tenant = await page_tenant(ctx, slug)
    try:
        codes = await attempt(ctx, backup_codes.regenerate(ctx, ctx.me().user_id))
    except ProblemError as exc:
        return await _refused(request, ctx, slug, exc, "backup")
    return _codes_page(request, ctx, tenant, codes)


@router.post("/t/{slug}/account/security/mfa/{method_id}/remove")
async def remove_method(
    slug: Slug, method_id: uuid.UUID, ctx: Enrolling, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, management.remove_method(ctx, ctx.me().user_id, method_id))
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return await _refused(request, ctx, slug, exc, str(method_id))
    return redirect(slug, "/account/security", "method-removed")


@router.post("/t/{slug}/account/security/code")
async def code_setup(slug: Slug, ctx: Enrolling, request: Request) -> Response:
    """Start enrolling email or text-message codes: a code goes to the address or number,
    and the next page asks for it (as ``POST /api/v1/auth/mfa/setup``)."""
    tenant = await page_tenant(ctx, slug)
    form = fields(await request.form(), "method", "identifier")
    try:
        body = parse(
            MfaSetupIn,
            {
                "method": form["method"],
                **({"identifier": form["identifier"]} if form["identifier"] else {}),
            },
        )
        if body.method not in CODE_METHODS:
            raise Unprocessable(
                "Choose email or text message codes.",
                errors=[{"field": "method", "in": "body", "message": "not a code method"}],
            )
        await attempt(ctx, flow.check_allowed(ctx, body.method))
        answer = await attempt(ctx, factors.get(body.method).setup(ctx, body.extras()))
    except ProblemError as exc:
        return await _refused(request, ctx, slug, exc, "code")
    return render(
        request,
        "account/code.html",
        ctx=ctx,
        tenant=tenant,
        method=answer["method"],
        label=LABELS.get(answer["method"], answer["method"]),
        method_id=answer["methodId"],
        sent_to=answer["sentTo"],
        error=None,
    )


@router.post("/t/{slug}/account/security/code/confirm")
async def code_confirm(slug: Slug, ctx: Enrolling, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    form = fields(await request.form(), "method", "methodId", "code")
    try:
        body = parse(
            MfaVerifySetupIn,
            {"method": form["method"], "code": form["code"],
             **({"methodId": form["methodId"]} if form["methodId"] else {})},
        )  # fmt: skip
        await attempt(ctx, flow.check_allowed(ctx, body.method))
        answer = await attempt(ctx, factors.get(body.method).confirm(ctx, body.extras()))
    except ProblemError as exc:
        if isinstance(exc, ReauthRequired) or form["method"] not in CODE_METHODS:
            return await _refused(request, ctx, slug, exc, "code")
        return render(
            request,
            "account/code.html",
            ctx=ctx,
            status=exc.status,
            tenant=tenant,
            method=form["method"],
            label=LABELS.get(form["method"], form["method"]),
            method_id=form["methodId"],
            sent_to=None,
            error="Enter the code." if exc.detail.startswith(INVALID_INPUT) else exc.detail,
        )
    if answer.get("backupCodes"):
        return _codes_page(request, ctx, tenant, answer["backupCodes"], after="code")
    return redirect(slug, "/account/security", "code-enrolled")
