"""Step-up: ``POST /api/v1/auth/reauth`` proves the user again inside his session, which
renews the session's ``authenticated_at`` (what sensitive permissions compare against).

The password (the MFA issue adds a second factor here) is a guess like a sign-in: counted
before the check, per user, and a failure leaves an audit entry although its transaction
rolls back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from kanvaro.acting import Acting
from kanvaro.identity.account import confirm_current_password, own_row
from kanvaro.identity.models import UserSession


async def reauthenticate(ctx: Acting, *, password: str) -> datetime:
    """Check the current password and renew the session's authentication time."""
    services = ctx.services
    principal = ctx.me()
    user = await own_row(ctx)
    await confirm_current_password(
        ctx,
        user,
        password,
        field="password",
        failure_action="auth:reauth:failure",
        resource=("session", principal.session_id),
        wrong="The password is wrong.",
    )
    now = services.clock.now()
    methods = sorted({*principal.auth_methods, "password"})
    # An ORM statement on purpose: the principal cache forgets the session on commit.
    await ctx.db.execute(
        update(UserSession)
        .where(UserSession.id == principal.session_id, UserSession.is_active.is_(True))
        .values(authenticated_at=now, auth_methods=methods)
    )
    await ctx.record(
        "auth:reauth:success",
        category="authentication",
        resource_type="session",
        resource_id=principal.session_id,
        changes={"methods": ["password"]},
    )
    return now
