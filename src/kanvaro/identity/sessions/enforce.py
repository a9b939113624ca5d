"""What every authenticated request checks about its session, after the principal is known:
the tenant policy's absolute and idle timeouts, and step-up for sensitive permissions.

Timeouts are computed from the session's own times and the policy in force now, so a policy
change applies to existing sessions. A session found past a timeout is ended in the database
(and audited) at once, not only refused, so every other instance refuses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kanvaro.acting import Principal
from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.errors import ReauthRequired, Unauthorized
from kanvaro.identity.principals import ENDED_BECAUSE
from kanvaro.identity.sessions.activity import granularity
from kanvaro.identity.sessions.policy import SessionPolicy
from kanvaro.services import Services


async def policy_of(services: Services, principal: Principal) -> SessionPolicy:
    tenant_id = principal.tenant_id
    cached = services.session_policies.peek(tenant_id)
    if cached is not None:
        return cached
    return await services.session_policies.get(
        tenant_id, lambda: services.db.reader(tenant_id=tenant_id)
    )


def timed_out(
    services: Services, principal: Principal, policy: SessionPolicy, now: datetime
) -> str | None:
    """Why the session is over by the policy's clock ("expired", "idle"), or None; a live
    session's activity is noted (and written now and then, off the request path)."""
    started = principal.session_started_at
    if started is not None and now >= started + policy.absolute_timeout:
        return "expired"
    last = services.activity.last_activity(principal.session_id, principal.last_activity_at)
    if last is not None and now - last > policy.idle_timeout:
        return "idle"
    services.activity.touch(
        principal.session_id, principal.last_activity_at, now, granularity(policy.idle_timeout)
    )
    return None


def check_recent_auth(
    principal: Principal,
    policy: SessionPolicy,
    permissions: Sequence[str],
    *,
    any_of: bool,
    now: datetime,
) -> None:
    """Step-up: a route that needs a permission the policy lists as sensitive needs an
    authentication no older than the policy's ``reauth_max_age``. With ``any_of``, holding a
    non-sensitive one of the permissions is enough."""
    if not policy.require_reauth_permissions or not permissions:
        return
    held = [p for p in permissions if principal.has(p)]
    sensitive = [p for p in held if policy.needs_recent_auth(p)]
    if not sensitive or (any_of and len(sensitive) < len(held)):
        return
    at = principal.authenticated_at
    if at is None or now - at > policy.reauth_max_age:
        raise ReauthRequired(
            f"{sensitive[0]} needs a recent sign-in: confirm it with POST /api/v1/auth/reauth.",
            permission=sensitive[0],
            maxAgeMinutes=policy.reauth_max_age_minutes,
        )


async def end_session(services: Services, principal: Principal, reason: str) -> None:
    """End the session for a timeout (audited once, by whichever request saw it first), then
    refuse the request."""
    from kanvaro.identity.auth import revoke_session  # auth imports this module's callers

    tenant_id = principal.tenant_id
    async with services.db.session(tenant_id=tenant_id, all_tenants=tenant_id is None) as db:
        if await revoke_session(db, principal.session_id, reason=reason):
            await audit.record(
                db,
                action="auth:session:expire",
                category="authentication",
                tenant_id=tenant_id,
                context=AuditContext(principal.user_id, None, None),
                resource_type="session",
                resource_id=principal.session_id,
                changes={"reason": reason},
            )
    raise Unauthorized(ENDED_BECAUSE[reason])
