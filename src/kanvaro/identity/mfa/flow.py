"""The sign-in's second step (seed 004): after the password, a user with MFA gets a short-lived,
single-use challenge (the login answer's ``sessionId``: a challenge, not a session) and the
methods he may use; ``POST /api/v1/auth/mfa/verify`` proves one of them and opens the session,
answering the same token pair as a password-only sign-in.

A challenge lives 5 minutes, allows 5 attempts, is bound to the password hash it followed (a
password change meanwhile voids it) and is spent by its first success. Attempts are counted in
a transaction of their own before the code is checked, so a failure counts although the
request's transaction rolls back; failures are audited security events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting, record_surviving
from kanvaro.audit.service import AuditContext
from kanvaro.errors import ReauthRequired, TooManyRequests, Unauthorized, Unprocessable
from kanvaro.identity.mfa import factors
from kanvaro.identity.mfa.models import MfaChallenge, MfaConfiguration, MfaMethod
from kanvaro.identity.mfa.policy import MfaPolicy
from kanvaro.identity.mfa.requirement import (
    Counted,
    Requirement,
    counted_methods,
    obligation,
    requirement,
)
from kanvaro.reads import session_reader
from kanvaro.security.throttle import Client
from kanvaro.services import Services

security_log = structlog.get_logger("kanvaro.security")

CHALLENGE_TTL = timedelta(minutes=5)
MAX_ATTEMPTS = 5
# The auth-method marker of a session that may only enroll a second factor (issue 11.6).
ENROLLMENT_ONLY = "mfa_enrollment"
INVALID_CHALLENGE = "The sign-in step has expired or is invalid; sign in again."
WRONG_CODE = "The code is wrong or has expired."


@dataclass(frozen=True)
class MfaStep:
    """The login answer when a second factor is needed."""

    challenge_id: uuid.UUID
    methods: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "requiresMFA": True,
            "sessionId": str(self.challenge_id),
            "methods": list(self.methods),
        }


async def mfa_policy(
    services: Services, tenant_id: uuid.UUID | None, db: AsyncSession | None = None
) -> MfaPolicy:
    if db is not None:
        return await services.mfa_policies.get(tenant_id, lambda: session_reader(db))
    return await services.mfa_policies.get(
        tenant_id, lambda: services.db.reader(tenant_id=tenant_id)
    )


async def usable_methods(db: AsyncSession, user_id: uuid.UUID) -> list[MfaMethod]:
    rows = await db.execute(
        select(MfaMethod).where(
            MfaMethod.user_id == user_id,
            MfaMethod.is_enabled.is_(True),
            MfaMethod.verified_at.is_not(None),
        )
    )
    return list(rows.scalars())


async def needed(
    services: Services,
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    trusted_device: bool,
    risk_wants_mfa: bool,
    now: datetime,
    counted: Counted | None = None,
) -> Requirement:
    """What the second step asks of this sign-in (``identity.mfa.requirement``), from what
    ``counted`` read earlier if given."""
    policy = counted[0].policy if counted is not None else await mfa_policy(services, tenant_id, db)
    return await requirement(
        services,
        db,
        user_id=user_id,
        tenant_id=tenant_id,
        policy=policy,
        trusted_device=trusted_device,
        risk_wants_mfa=risk_wants_mfa,
        now=now,
        counted=counted,
    )


async def read_counted(
    services: Services, db: AsyncSession, *, user_id: uuid.UUID, tenant_id: uuid.UUID | None
) -> Counted:
    """What ``needed`` decides from (the tenant's policy, the user's duty and methods), read
    without side effects."""
    return await counted_methods(db, user_id, await mfa_policy(services, tenant_id, db))


async def begin(
    services: Services,
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    password_hash: str | None,
    methods: tuple[str, ...],
    context: AuditContext,
    now: datetime,
    first_method: str = "password",
) -> MfaStep:
    """A sign-in challenge for a user whose first factor (``first_method``: the password, or
    an SSO identity provider's word) was just verified."""
    challenge = MfaChallenge(
        tenant_id=tenant_id,
        user_id=user_id,
        purpose="sign_in",
        first_method=first_method,
        expires_at=now + CHALLENGE_TTL,
        password_hash=password_hash,
        client={"ip": context.ip_address, "userAgent": (context.user_agent or "")[:512]},
    )
    db.add(challenge)
    await db.flush()
    return MfaStep(challenge.id, methods)


async def open_challenge(
    services: Services, challenge_id: uuid.UUID, *, purpose: str = "sign_in"
) -> MfaChallenge:
    """The live challenge, one attempt spent on it (committed on its own, so a failure counts
    whatever happens to the request's transaction); Unauthorized when it is unknown, spent,
    expired or out of attempts."""
    now = services.clock.now()
    async with services.db.session(all_tenants=True) as db:
        counted = await db.execute(
            update(MfaChallenge)
            .where(
                MfaChallenge.id == challenge_id,
                MfaChallenge.purpose == purpose,
                MfaChallenge.used_at.is_(None),
                MfaChallenge.expires_at > now,
                MfaChallenge.attempts < MAX_ATTEMPTS,
            )
            .values(attempts=MfaChallenge.attempts + 1)
            .returning(MfaChallenge.id)
        )
        if counted.first() is None:
            raise Unauthorized(INVALID_CHALLENGE)
        challenge = await db.get(MfaChallenge, challenge_id)
        assert challenge is not None
        db.expunge(challenge)
    return challenge


async def spend(db: AsyncSession, challenge: MfaChallenge, now: datetime) -> bool:
    """Mark the challenge used, once: a second success racing this one finds it spent."""
    result = await db.execute(
        update(MfaChallenge)
        .where(MfaChallenge.id == challenge.id, MfaChallenge.used_at.is_(None))
        .values(used_at=now)
    )
    return result.rowcount == 1


async def prove(
    services: Services,
    db: AsyncSession,
    *,
    challenge: MfaChallenge,
    method: str,
    code: str,
    context: AuditContext,
    client: Client | None = None,
) -> MfaMethod:
    """Check ``code`` with the factor ``method`` for the challenge's user; the method used.
    A wrong code is audited and throttled per (user, client): a device the user signed in
    from before, else the address; its answer names no factor or user."""
    now = services.clock.now()
    assert challenge.user_id is not None
    user_id = challenge.user_id
    if client is None:
        client = Client.of_ip(context.ip_address)
    verdict = await services.throttle.attempt_mfa(str(user_id), client)
    if not verdict.allowed:
        raise TooManyRequests(
            "Too many wrong codes. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    policy = await mfa_policy(services, challenge.tenant_id, db)
    name = factors.canonical(method)
    factor = factors.get(method)
    used = None
    # Allowed by the policy for this user (a phishing-resistant role: WebAuthn only).
    if (await obligation(db, user_id, policy)).counts(name):
        used = await factor.verify(
            services, db, challenge=challenge, user_id=user_id, code=code, now=now
        )
    if used is None or used.user_id != user_id:
        await record_surviving(
            services,
            action="auth:mfa:failure",
            category="authentication",
            tenant_id=challenge.tenant_id,
            context=AuditContext(user_id, context.ip_address, context.user_agent),
            resource_type="user",
            resource_id=user_id,
            changes={"method": name},
        )
        security_log.warning("mfa_failure", user_id=str(user_id), ip=context.ip_address)
        raise Unauthorized(WRONG_CODE)
    if not await spend(db, challenge, now):
        raise Unauthorized(INVALID_CHALLENGE)
    await services.throttle.mfa_succeeded(str(user_id), client)
    used.last_used_at = now
    return used


async def mark_enabled(ctx: Acting) -> None:
    """The user's first verified method turns MFA on for him (seed ``mfa_configurations``)."""
    principal = ctx.me()
    config = (
        await ctx.db.execute(
            select(MfaConfiguration).where(MfaConfiguration.user_id == principal.user_id)
        )
    ).scalar_one_or_none()
    if config is None:
        config = MfaConfiguration(tenant_id=principal.tenant_id, user_id=principal.user_id)
        ctx.db.add(config)
    config.mfa_enabled = True
    await ctx.db.flush()


async def send_code(
    services: Services, db: AsyncSession, *, challenge_id: uuid.UUID, method: str
) -> None:
    """Have the factor ``method`` (email, sms) send its code for a live sign-in challenge;
    the factor limits how often. An unknown or spent challenge is 401 like in verify."""
    now = services.clock.now()
    challenge = await db.get(MfaChallenge, challenge_id)
    if (
        challenge is None
        or challenge.purpose != "sign_in"
        or challenge.used_at is not None
        or challenge.expires_at <= now
        or challenge.attempts >= MAX_ATTEMPTS
        or challenge.user_id is None
    ):
        raise Unauthorized(INVALID_CHALLENGE)
    policy = await mfa_policy(services, challenge.tenant_id, db)
    factor = factors.get(method)
    sender = getattr(factor, "send", None)
    if sender is None or not policy.allows(factor.name):
        raise Unprocessable(
            "This method sends no code.",
            errors=[{"field": "method", "in": "body", "message": "sends no code"}],
        )
    await sender(services, db, challenge=challenge, user_id=challenge.user_id, now=now)


async def check_allowed(ctx: Acting, method: str) -> None:
    """Enrolling ``method`` needs the tenant's MFA policy to allow it for the user (422 naming
    ``method``) and a recent authentication (the session policy's reauth age)."""
    principal = ctx.me()
    policy = await mfa_policy(ctx.services, principal.tenant_id, ctx.db)
    duty = await obligation(ctx.db, principal.user_id, policy)
    if not duty.counts(factors.canonical(method)):
        raise Unprocessable(
            "The tenant's MFA policy does not allow this method.",
            errors=[{"field": "method", "in": "body", "message": "not allowed by the policy"}],
        )
    # A recent authentication too: a stolen access token must not add the thief's factor.
    services = ctx.services
    sessions = await services.session_policies.get(
        principal.tenant_id, lambda: session_reader(ctx.db)
    )
    at = principal.authenticated_at
    if at is None or services.clock.now() - at > sessions.reauth_max_age:
        raise ReauthRequired(
            "Adding a second factor needs a recent sign-in: confirm it with "
            "POST /api/v1/auth/reauth.",
            maxAgeMinutes=sessions.reauth_max_age_minutes,
        )
