"""A user's second factors as actions: list them, remove one, and the administrator's reset.

Whose methods a caller reaches is decided as for sessions and devices
(``identity/sessions/service.subject``): his own, every user of his tenant with
``user:manage`` (no escalation: nobody changes someone whose role grants more than he could
assign), another tenant's user is 404. An enrollment-only session reaches its own only.

Removing a method and resetting someone's MFA need a recent sign-in (step-up), whatever the
session policy lists: a stolen access token alone must not be able to take a factor away.
Removing the last method that counts while the policy requires MFA is 409: the user would be
locked into enrollment. The reset is the administrator's way out for a user who lost his
factors: it deletes every method, backup code and open challenge, ends the user's sessions
and withdraws his devices' trust (sessions and trust were won with the old factors, which may
be in someone else's hands), starts a new enrollment grace period at the next sign-in, is
audited (``auth:mfa:reset``) and mailed to the user.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, func, select, update

from kanvaro.acting import Acting, Principal
from kanvaro.db import on_commit
from kanvaro.errors import Conflict, MfaEnrollmentRequired, NotFound, ReauthRequired
from kanvaro.identity.mfa.flow import ENROLLMENT_ONLY, mfa_policy
from kanvaro.identity.mfa.models import (
    BACKUP_CODE,
    MfaBackupCode,
    MfaChallenge,
    MfaConfiguration,
    MfaMethod,
)
from kanvaro.identity.mfa.requirement import obligation
from kanvaro.identity.models import User, UserSession
from kanvaro.identity.sessions import service as sessions
from kanvaro.identity.sessions.models import TrustedDevice
from kanvaro.identity.sessions.policy import SessionPolicy
from kanvaro.tenancy.models import Tenant

log = structlog.get_logger("kanvaro.mail")

MFA_RESET = "mfa_reset"  # revoked_reason of the sessions a reset ends
NO_METHOD = "No such MFA method."


def _aware(value: datetime | None, now: datetime) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=now.tzinfo)


def require_step_up(principal: Principal, policy: SessionPolicy, now: datetime) -> None:
    """A sign-in (or re-authentication) no older than the session policy's reauth age."""
    at = _aware(principal.authenticated_at, now)
    if at is None or now - at > policy.reauth_max_age:
        raise ReauthRequired(
            "Changing second factors needs a recent sign-in: confirm it with "
            "POST /api/v1/auth/reauth.",
            maxAgeMinutes=policy.reauth_max_age_minutes,
        )


async def _subject(ctx: Acting, user_id: uuid.UUID, *, change: bool) -> sessions.Subject:
    principal = ctx.me()
    if ENROLLMENT_ONLY in principal.auth_methods and user_id != principal.user_id:
        raise MfaEnrollmentRequired("Set up a second factor first: POST /api/v1/auth/mfa/setup.")
    return await sessions.subject(ctx, user_id, change=change)


def method_out(method: MfaMethod) -> dict[str, Any]:
    """A method as the API shows it: never its secret, identifier or credential."""
    return {
        "id": method.id,
        "method": method.method_type,
        "name": method.device_name,
        "createdAt": method.created_at,
        "lastUsedAt": method.last_used_at,
        "verified": method.verified_at is not None,
    }


async def _methods(ctx: Acting, user_id: uuid.UUID) -> list[MfaMethod]:
    statement = (
        select(MfaMethod)
        .where(MfaMethod.user_id == user_id)
        .order_by(MfaMethod.created_at, MfaMethod.id)
    )
    return list((await ctx.db.execute(statement)).scalars())


async def _backup_codes_left(ctx: Acting, user_id: uuid.UUID) -> int:
    statement = select(func.count()).where(
        MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None)
    )
    return int((await ctx.db.execute(statement)).scalar_one())


async def overview(ctx: Acting, user_id: uuid.UUID) -> dict[str, Any]:
    """The user's methods (no secrets), his unused backup codes, and whether he must use MFA."""
    who = await _subject(ctx, user_id, change=False)
    methods = await _methods(ctx, who.user_id)
    policy = await mfa_policy(ctx.services, who.tenant_id, ctx.db)
    duty = await obligation(ctx.db, who.user_id, policy)
    return {
        "methods": [method_out(m) for m in methods],
        "backupCodesRemaining": await _backup_codes_left(ctx, who.user_id),
        "mfaEnabled": any(_is_factor(m) for m in methods),
        "required": duty.must,
    }


def _is_factor(method: MfaMethod) -> bool:
    """A verified, enabled method other than backup codes (what makes MFA "set up")."""
    return (
        method.method_type != BACKUP_CODE and method.is_enabled and method.verified_at is not None
    )


async def remove_method(ctx: Acting, user_id: uuid.UUID, method_id: uuid.UUID) -> None:
    """Remove one method of the user (audited). Removing the last factor that counts while
    the policy requires MFA is refused; removing the last factor at all takes the backup codes
    with it and turns MFA off."""
    who = await _subject(ctx, user_id, change=True)
    require_step_up(ctx.me(), who.policy, ctx.services.clock.now())
    methods = await _methods(ctx, who.user_id)
    target = next((m for m in methods if m.id == method_id), None)
    if target is None:
        raise NotFound(NO_METHOD)
    others = [m for m in methods if m.id != method_id and _is_factor(m)]
    if _is_factor(target):
        policy = await mfa_policy(ctx.services, who.tenant_id, ctx.db)
        duty = await obligation(ctx.db, who.user_id, policy)
        last = not any(duty.counts(m.method_type) for m in others)
        if duty.must and duty.counts(target.method_type) and last:
            raise Conflict(
                "This is the last second factor your organisation's MFA policy accepts: "
                "set up another one before removing it."
            )
    await ctx.db.delete(target)
    codes_removed = 0
    if not others or target.method_type == BACKUP_CODE:
        codes_removed = await _delete_backup_codes(ctx, who.user_id, keep_methods=bool(others))
    if not others:
        await _set_disabled(ctx, who.user_id, restart_grace=False)
    await ctx.db.flush()
    await ctx.record(
        "auth:mfa:remove",
        category="authentication",
        resource_type="mfa_method",
        resource_id=method_id,
        changes={
            "userId": str(who.user_id),
            "method": target.method_type,
            "backupCodesRemoved": codes_removed,
            "mfaEnabled": bool(others),
        },
    )


async def _delete_backup_codes(ctx: Acting, user_id: uuid.UUID, *, keep_methods: bool) -> int:
    removed = await ctx.db.execute(
        delete(MfaBackupCode).where(MfaBackupCode.user_id == user_id).returning(MfaBackupCode.id)
    )
    count = len(removed.all())
    if not keep_methods:  # a backup-code "method" row, if the factor keeps one
        await ctx.db.execute(
            delete(MfaMethod).where(
                MfaMethod.user_id == user_id, MfaMethod.method_type == BACKUP_CODE
            )
        )
    return count


async def _set_disabled(ctx: Acting, user_id: uuid.UUID, *, restart_grace: bool) -> None:
    values: dict[str, Any] = {"mfa_enabled": False}
    if restart_grace:  # the grace period starts again at the next sign-in
        values |= {"required_since": None, "enforced_by_policy": False}
    await ctx.db.execute(
        update(MfaConfiguration).where(MfaConfiguration.user_id == user_id).values(**values)
    )


async def reset(ctx: Acting, user_id: uuid.UUID) -> dict[str, Any]:
    """An administrator's reset of another user's MFA (see the module's docstring)."""
    principal = ctx.me()
    if user_id == principal.user_id:
        raise Conflict(
            "Your own second factors are removed one by one (DELETE .../mfa/{methodId}); "
            "a reset is for another user."
        )
    who = await _subject(ctx, user_id, change=True)
    now = ctx.services.clock.now()
    require_step_up(principal, who.policy, now)
    removed = await ctx.db.execute(
        delete(MfaMethod).where(MfaMethod.user_id == who.user_id).returning(MfaMethod.method_type)
    )
    types = sorted(str(t) for t in removed.scalars())
    codes = await _delete_backup_codes(ctx, who.user_id, keep_methods=False)
    await ctx.db.execute(
        delete(MfaChallenge).where(
            MfaChallenge.user_id == who.user_id, MfaChallenge.used_at.is_(None)
        )
    )
    await _set_disabled(ctx, who.user_id, restart_grace=True)
    ended = await ctx.db.execute(
        update(UserSession)
        .where(UserSession.user_id == who.user_id, UserSession.is_active.is_(True))
        .values(is_active=False, revoked_at=now, revoked_reason=MFA_RESET)
        .returning(UserSession.id)
    )
    sessions_ended = len(ended.all())
    untrusted = await ctx.db.execute(
        update(TrustedDevice)
        .where(TrustedDevice.user_id == who.user_id, TrustedDevice.is_trusted.is_(True))
        .values(is_trusted=False, trust_expires_at=None, updated_at=now)
        .returning(TrustedDevice.id)
    )
    summary = {
        "userId": str(who.user_id),
        "methodsRemoved": types,
        "backupCodesRemoved": codes,
        "sessionsEnded": sessions_ended,
        "devicesUntrusted": len(untrusted.all()),
    }
    await ctx.record(
        "auth:mfa:reset",
        category="authentication",
        resource_type="user",
        resource_id=who.user_id,
        changes=summary,
    )
    await _mail_reset(ctx, who.user_id)
    return summary


async def _mail_reset(ctx: Acting, user_id: uuid.UUID) -> None:
    """Tell the user, after commit, that his second factors were reset (and by whom not: the
    mail names the organisation, the audit log names the administrator)."""
    row = (
        await ctx.db.execute(
            select(User.email, User.first_name, Tenant.name)
            .outerjoin(Tenant, Tenant.id == User.tenant_id)
            .where(User.id == user_id)
        )
    ).first()
    if row is None:
        return
    address, first_name, tenant_name = row
    where = f" at {tenant_name}" if tenant_name else ""
    body = (
        f"Hello {first_name},\n\n"
        f"an administrator{where} has reset the two-step sign-in (MFA) of your Kanvaro "
        "account. Your authenticator apps, security keys and backup codes no longer work, "
        "and you were signed out everywhere.\n\n"
        "At your next sign-in you will be asked to set up a second factor again.\n"
        "If you did not ask for this, contact your administrator at once.\n"
    )
    services = ctx.services

    async def send() -> None:
        try:
            await services.mailer.send(address, "Your two-step sign-in was reset", body)
        except Exception as exc:  # the reset stands; the failure is logged without the body
            log.error("mfa_reset_mail_not_sent", error_type=type(exc).__name__)

    on_commit(ctx.db, send)
