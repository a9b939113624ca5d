"""``/api/v1/auth/webauthn``: registering authenticators, the WebAuthn second step of a
password sign-in, and the passwordless passkey sign-in. Each ceremony is options (a stored
challenge, single use, 5 minutes) then verify."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import (
    Ctx,
    audit_context,
    enrolling,
    own_origins,
    public_db,
    request_ip,
    services_of,
)
from kanvaro.errors import TooManyRequests
from kanvaro.identity import auth
from kanvaro.identity.auth_routes import SessionOut, as_cookies, sign_in_request
from kanvaro.identity.mfa import webauthn_factor, webauthn_signin
from kanvaro.identity.mfa.models import WEBAUTHN
from kanvaro.identity.mfa.webauthn_schemas import (
    PasskeyOptionsIn,
    PasskeyVerifyIn,
    RegisterOptionsIn,
    RegisterVerifyIn,
    SecondFactorOptionsIn,
    SecondFactorVerifyIn,
)
from kanvaro.identity.sessions import cookies

router = APIRouter(prefix="/api/v1/auth/webauthn", tags=["webauthn"])
PublicDb = Annotated[AsyncSession, public_db()]
Enrolling = Annotated[Ctx, enrolling()]


@router.post("/register/options")
async def register_options(ctx: Enrolling, body: RegisterOptionsIn | None = None) -> dict[str, Any]:
    """Creation options for a new authenticator of the signed-in user (`publicKey` for
    `navigator.credentials.create`) and the `challengeId` to send back with its answer."""
    return await webauthn_factor.registration_options(ctx)


@router.post("/register/verify", status_code=201)
async def register_verify(body: RegisterVerifyIn, ctx: Enrolling) -> dict[str, Any]:
    """Store the new authenticator under `name`; it is usable at once."""
    return await webauthn_factor.register(
        ctx, challenge_id=body.challenge_id, credential=body.credential, name=body.name
    )


@router.post("/authenticate/options")
async def second_factor_options(
    body: SecondFactorOptionsIn, request: Request, db: PublicDb
) -> dict[str, Any]:
    """Assertion options for the second step of a password sign-in (the login answer's
    `sessionId`)."""
    return await webauthn_signin.second_factor_options(
        services_of(request), db, challenge_id=body.session_id
    )


@router.post("/authenticate/verify", response_model=SessionOut, response_model_by_alias=True)
async def second_factor_verify(
    body: SecondFactorVerifyIn, request: Request, response: Response, db: PublicDb
) -> dict[str, object]:
    """The WebAuthn second step: answers the same tokens as `mfa/verify`."""
    if body.transport == cookies.COOKIE:
        cookies.refuse_cross_site(request.headers, own_origins(request))
    pair = await auth.complete_second_step(
        services_of(request),
        db,
        challenge_id=body.session_id,
        method=WEBAUTHN,
        code=json.dumps(body.credential),
        context=audit_context(request),
        client=sign_in_request(request, body.device_token),
    )
    if body.transport == cookies.COOKIE:
        return as_cookies(request, response, pair)
    return pair.to_json()


@router.post("/passkey/options")
async def passkey_options(
    request: Request, db: PublicDb, body: PasskeyOptionsIn | None = None
) -> dict[str, Any]:
    """Options for a passwordless sign-in (no user named; `tenant` is the tenant's slug,
    optional): the `sessionId` to send back with the authenticator's answer. Limited per
    client address like sign-in."""
    services = services_of(request)
    verdict = await services.throttle.attempt_passkey_start(request_ip(request))
    if not verdict.allowed:
        raise TooManyRequests(
            "Too many sign-in attempts. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    return await webauthn_signin.passkey_options(
        services_of(request),
        db,
        tenant=body.tenant if body is not None else None,
        context=audit_context(request),
    )


@router.post("/passkey/verify", response_model=SessionOut, response_model_by_alias=True)
async def passkey_verify(
    body: PasskeyVerifyIn, request: Request, response: Response, db: PublicDb
) -> dict[str, object]:
    """Sign in with a passkey alone; the session records `webauthn` as its method."""
    if body.transport == cookies.COOKIE:
        cookies.refuse_cross_site(request.headers, own_origins(request))
    pair = await auth.complete_passkey(
        services_of(request),
        db,
        challenge_id=body.session_id,
        credential=body.credential,
        context=audit_context(request),
        client=sign_in_request(request, body.device_token),
    )
    if body.transport == cookies.COOKIE:
        return as_cookies(request, response, pair)
    return pair.to_json()
