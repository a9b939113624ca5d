"""The seed's ``users.ssn``: read and set by the person, or by ``user:manage`` after step-up.

An SSN is never part of a user listing or of ``UserOut``: it is asked for on its own, so the
wider reads of a tenant's people cannot leak it. Another person's SSN needs ``user:manage``
*and* a recent authentication (the session policy's ``reauthMaxAgeMinutes``), whether or not
the policy lists ``user:manage`` as sensitive; every read of another's SSN is audited. The value
is an encrypted field (crypto/fields.py) under the person's own data key, so crypto-shredding
erases it with the rest.
"""

from __future__ import annotations

import uuid

from kanvaro.acting import Acting
from kanvaro.errors import NotFound, ReauthRequired
from kanvaro.identity.models import User
from kanvaro.identity.sessions.service import policy_in_force
from kanvaro.security.permissions import Permission as P

NO_USER = "No such user."


async def _subject(ctx: Acting, user_id: uuid.UUID) -> tuple[User, bool]:
    principal = ctx.me()
    own = user_id == principal.user_id
    if not own and (not principal.has(P.USER_MANAGE) or principal.project_scoped):
        await ctx.deny(P.USER_MANAGE)  # audited, then answered as if nobody were there
        raise NotFound(NO_USER)
    if not own:
        policy = await policy_in_force(ctx, ctx.tenant_id)
        at = principal.authenticated_at
        if at is None or ctx.services.clock.now() - at > policy.reauth_max_age:
            raise ReauthRequired(
                "Another person's SSN needs a recent sign-in: confirm it with "
                "POST /api/v1/auth/reauth.",
                permission=P.USER_MANAGE.value,
                maxAgeMinutes=policy.reauth_max_age_minutes,
            )
    user = await ctx.db.get(User, user_id)
    if user is None:
        raise NotFound(NO_USER)
    return user, own


async def read_ssn(ctx: Acting, user_id: uuid.UUID) -> str | None:
    user, own = await _subject(ctx, user_id)
    if not own:
        await ctx.record(
            "api:user:ssn-read", category="user_activity", resource_type="user", resource_id=user.id
        )
    return user.ssn


async def set_ssn(ctx: Acting, user_id: uuid.UUID, ssn: str | None) -> None:
    user, _ = await _subject(ctx, user_id)
    user.ssn = ssn
    await ctx.db.flush()
    # The value never enters the audit trail: only that it was set or cleared.
    await ctx.record(
        "api:user:ssn-update",
        category="user_activity",
        resource_type="user",
        resource_id=user.id,
        changes={"ssn": "set" if ssn is not None else "cleared"},
    )
