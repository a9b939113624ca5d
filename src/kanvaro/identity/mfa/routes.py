"""``/api/v1/auth/mfa``: enrollment (setup, verify-setup) and the sign-in's second step
(verify, send), dispatched to the factor the body names."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import Ctx, audit_context, enrolling, own_origins, public_db, services_of
from kanvaro.identity import auth
from kanvaro.identity.auth_routes import SessionOut, as_cookies, sign_in_request
from kanvaro.identity.mfa import factors, flow
from kanvaro.identity.mfa.schemas import MfaSendIn, MfaSetupIn, MfaVerifyIn, MfaVerifySetupIn
from kanvaro.identity.sessions import cookies

router = APIRouter(prefix="/api/v1/auth/mfa", tags=["mfa"])
PublicDb = Annotated[AsyncSession, public_db()]
Enrolling = Annotated[Ctx, enrolling()]


@router.post("/setup")
async def setup(body: MfaSetupIn, ctx: Enrolling) -> dict[str, Any]:
    """Start enrolling a method. TOTP answers `{methodId, secret, qrCode, otpauthUri,
    backupCodes}`; email and SMS send a code to confirm with `verify-setup`. WebAuthn has its
    own ceremony under `/api/v1/auth/webauthn/`."""
    await flow.check_allowed(ctx, body.method)
    return await factors.get(body.method).setup(ctx, body.extras())


@router.post("/verify-setup")
async def verify_setup(body: MfaVerifySetupIn, ctx: Enrolling) -> dict[str, Any]:
    """Confirm a method being enrolled with a code it produced; it becomes usable."""
    await flow.check_allowed(ctx, body.method)
    return await factors.get(body.method).confirm(ctx, body.extras())


@router.post("/verify", response_model=SessionOut, response_model_by_alias=True)
async def verify(
    body: MfaVerifyIn, request: Request, response: Response, db: PublicDb
) -> dict[str, object]:
    """The sign-in's second step: the challenge from the login answer (`sessionId`), a code
    and the method that made it. Answers the same tokens as a password-only sign-in (as
    cookies with `"transport": "cookie"`)."""
    if body.transport == cookies.COOKIE:
        cookies.refuse_cross_site(request.headers, own_origins(request))
    pair = await auth.complete_second_step(
        services_of(request),
        db,
        challenge_id=body.session_id,
        method=body.method,
        code=body.code,
        context=audit_context(request),
        client=sign_in_request(request, body.device_token),
    )
    if body.transport == cookies.COOKIE:
        return as_cookies(request, response, pair)
    return pair.to_json()


@router.post("/send", status_code=202)
async def send(body: MfaSendIn, request: Request, db: PublicDb) -> Response:
    """Send the code of an email or SMS method for a sign-in challenge (at most once a
    minute)."""
    await auth.send_second_step_code(
        services_of(request), db, challenge_id=body.session_id, method=body.method
    )
    return Response(status_code=202)
