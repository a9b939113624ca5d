"""Signing in with WebAuthn: the assertion options of the second step, and the passwordless
passkey sign-in (a discoverable credential names its user).

A passkey sign-in starts with no user: its challenge (purpose ``passkey``, 5 minutes, 5
attempts, single use) names at most the tenant. The authenticator answers with the
credential and the user handle our registration gave it; both must name the same method.
User verification is always required here: the passkey is then something the user has and
something he is or knows, so the session counts as phishing-resistant multi-factor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import generate_authentication_options
from webauthn.helpers.structs import UserVerificationRequirement

from kanvaro.acting import record_surviving
from kanvaro.audit.service import AuditContext
from kanvaro.errors import TooManyRequests, Unauthorized, Unprocessable
from kanvaro.identity.mfa import flow, webauthn_assertion
from kanvaro.identity.mfa.models import WEBAUTHN, MfaChallenge, MfaMethod
from kanvaro.identity.mfa.webauthn_factor import user_verification, webauthn_methods
from kanvaro.identity.mfa.webauthn_rp import (
    TIMEOUT_MS,
    RelyingParty,
    credential_of,
    descriptors,
    options_json,
    raw_id,
)
from kanvaro.identity.models import User
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant

security_log = structlog.get_logger("kanvaro.security")

PASSKEY = "passkey"
PASSKEY_REFUSED = "The passkey was not accepted."


def _not_available() -> Unprocessable:
    return Unprocessable(
        "No WebAuthn authenticator can be used for this sign-in.",
        errors=[{"field": "method", "in": "body", "message": "not available"}],
    )


async def second_factor_options(
    services: Services, db: AsyncSession, *, challenge_id: uuid.UUID
) -> dict[str, Any]:
    """Assertion options for a live sign-in challenge: the user's credentials allowed, UV as
    the policy says, the legacy U2F AppID offered when configured. Each call replaces the
    challenge's WebAuthn challenge (the last one asked for is the one that counts)."""
    now = services.clock.now()
    challenge = await db.get(MfaChallenge, challenge_id)
    if (
        challenge is None
        or challenge.purpose != "sign_in"
        or challenge.used_at is not None
        or challenge.expires_at <= now
        or challenge.attempts >= flow.MAX_ATTEMPTS
        or challenge.user_id is None
    ):
        raise Unauthorized(flow.INVALID_CHALLENGE)
    policy = await flow.mfa_policy(services, challenge.tenant_id, db)
    methods = await webauthn_methods(db, challenge.user_id)
    if not policy.allows(WEBAUTHN) or not methods:
        raise _not_available()
    rp = RelyingParty.of(services.settings)
    options = generate_authentication_options(
        rp_id=rp.id,
        timeout=TIMEOUT_MS,
        allow_credentials=descriptors(methods),
        user_verification=user_verification(policy.require_user_verification),
    )
    challenge.webauthn_challenge = options.challenge
    await db.flush()
    extensions = {"appid": rp.u2f_appid} if rp.u2f_appid else {}
    return {"sessionId": str(challenge.id), "publicKey": options_json(options, **extensions)}


async def passkey_options(
    services: Services, db: AsyncSession, *, tenant: str | None, context: AuditContext
) -> dict[str, Any]:
    """Options for a passwordless sign-in: no credentials listed (the authenticator offers
    its discoverable ones), UV required. An unknown or suspended tenant gets options alike
    (and its sign-in then fails like a wrong passkey)."""
    tenant_id = None
    if tenant is not None:
        found = (
            await db.execute(
                select(Tenant.id, Tenant.status).where(Tenant.slug == tenant.strip().lower())
            )
        ).first()
        tenant_id = found.id if found is not None and found.status == "active" else None
    rp = RelyingParty.of(services.settings)
    options = generate_authentication_options(
        rp_id=rp.id,
        timeout=TIMEOUT_MS,
        allow_credentials=[],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    challenge = MfaChallenge(
        tenant_id=tenant_id,
        user_id=None,
        purpose=PASSKEY,
        expires_at=services.clock.now() + flow.CHALLENGE_TTL,
        webauthn_challenge=options.challenge,
        client={
            "ip": context.ip_address,
            "userAgent": (context.user_agent or "")[:512],
            "tenantNamed": tenant is not None,
        },
    )
    db.add(challenge)
    await db.flush()
    return {"sessionId": str(challenge.id), "publicKey": options_json(options)}


@dataclass(frozen=True)
class ProvedPasskey:
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    password_hash: str | None  # the account's current one: the session's row-lock check

    def __repr__(self) -> str:
        return f"ProvedPasskey(user_id={self.user_id})"


async def prove_passkey(
    services: Services,
    db: AsyncSession,
    *,
    challenge_id: uuid.UUID,
    credential: Any,
    context: AuditContext,
) -> ProvedPasskey:
    """The user a passkey assertion proves, the challenge spent; 401 (one answer for every
    reason: unknown credential, other tenant, wrong signature, no UV, counter regression)."""
    body = credential_of(credential)
    challenge = await flow.open_challenge(services, challenge_id, purpose=PASSKEY)
    method = await _method_of(db, challenge, body)
    if method is None:
        await _refuse(services, challenge, None, "unknown_credential", context)
    verdict = await services.throttle.attempt_mfa(str(method.user_id), context.ip_address)
    if not verdict.allowed:
        raise TooManyRequests(
            "Too many failed sign-ins. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    policy = await flow.mfa_policy(services, method.tenant_id, db)
    now = services.clock.now()
    if not policy.allows(WEBAUTHN):
        await _refuse(services, challenge, method, "method_not_allowed", context)
    checked = await webauthn_assertion.check(
        services,
        method=method,
        credential=body,
        challenge=challenge,
        policy=policy,
        require_user_verification=True,
        now=now,
    )
    if not checked.ok:
        await _refuse(services, challenge, method, checked.reason, context)
    if not await flow.spend(db, challenge, now):
        raise Unauthorized(flow.INVALID_CHALLENGE)
    await services.throttle.mfa_succeeded(str(method.user_id), context.ip_address)
    method.discoverable = True  # it was found with no credential listed
    password_hash = (
        await db.execute(select(User.password_hash).where(User.id == method.user_id))
    ).scalar_one_or_none()
    return ProvedPasskey(method.user_id, method.tenant_id, password_hash)


async def _method_of(
    db: AsyncSession, challenge: MfaChallenge, body: dict[str, Any]
) -> MfaMethod | None:
    """The usable WebAuthn method the credential and its user handle both name, in the
    challenge's tenant when it named one."""
    credential_id = raw_id(body)
    method = (
        await db.execute(
            select(MfaMethod).where(
                MfaMethod.credential_id == credential_id,
                MfaMethod.method_type == WEBAUTHN,
                MfaMethod.is_enabled.is_(True),
                MfaMethod.verified_at.is_not(None),
            )
        )
    ).scalar_one_or_none()
    if method is None or webauthn_assertion.user_handle(body) != method.user_id:
        return None
    if (challenge.client or {}).get("tenantNamed") and method.tenant_id != challenge.tenant_id:
        return None
    return method


async def _refuse(
    services: Services,
    challenge: MfaChallenge,
    method: MfaMethod | None,
    reason: str,
    context: AuditContext,
) -> NoReturn:
    """Audit (surviving the rollback) and answer the one 401."""
    user_id = method.user_id if method is not None else None
    tenant_id = method.tenant_id if method is not None else challenge.tenant_id
    security_log.warning(
        "passkey_failure",
        reason=reason,
        user_id=str(user_id) if user_id else None,
        ip=context.ip_address,
    )
    await record_surviving(
        services,
        action="auth:passkey:failure",
        category="authentication",
        tenant_id=tenant_id,
        context=AuditContext(user_id, context.ip_address, context.user_agent),
        resource_type="user" if user_id else None,
        resource_id=user_id,
        changes={"method": WEBAUTHN, "reason": reason},
    )
    raise Unauthorized(PASSKEY_REFUSED)
