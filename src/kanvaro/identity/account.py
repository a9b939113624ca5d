"""Actions on one's own account: sign out, change the password, accept an invitation.

Each takes the acting value (or, for invitation acceptance, which has no signed-in caller, the
services and the request's audit context) and writes its own audit entry, so the API, the
console and the CLI share them.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting
from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import end_read_only_prefix, utcnow
from kanvaro.errors import BadRequest, TooManyRequests, Unauthorized
from kanvaro.identity import auth
from kanvaro.identity.models import Invitation, User
from kanvaro.identity.users import check_password
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant
from kanvaro.tenancy.service import password_policy

INVITATION_INVALID = "The invitation is invalid or has expired."


async def own_row(ctx: Acting) -> User:
    """The caller's own user row (``own_account()`` keeps the super admin, who belongs to no
    tenant, in an instance-wide session, so his row is visible)."""
    user = await ctx.db.get(User, ctx.me().user_id)
    assert user is not None  # the dependency has just loaded it
    return user


async def logout(ctx: Acting) -> None:
    """End the caller's session; nothing is recorded when another request ended it first."""
    principal = ctx.me()
    if not await auth.revoke_session(ctx.db, principal.session_id, reason="logout"):
        return
    await ctx.record(
        "auth:session:logout",
        category="authentication",
        resource_type="session",
        resource_id=principal.session_id,
    )


async def confirm_current_password(
    ctx: Acting,
    user: User,
    password: str,
    *,
    field: str,
    failure_action: str,
    resource: tuple[str, uuid.UUID],
    wrong: str,
) -> None:
    """A signed-in user re-enters his password (password change, step-up). It is a guess like
    a sign-in: counted per user before the check, so a stolen access token cannot be used to
    find the password; checked with no transaction open; a failure is audited although the
    request's transaction rolls back, and answered 400 naming ``field``."""
    services = ctx.services
    verdict = await services.throttle.attempt_reauth(str(user.id))
    if not verdict.allowed:
        raise TooManyRequests(
            "Too many wrong passwords. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    stored_hash = user.password_hash
    await end_read_only_prefix(ctx.db)
    valid, _ = await services.hasher.verify_async(password, stored_hash)
    if not valid:
        await ctx.record_after_rollback(
            failure_action, category="authentication", resource_type=resource[0],
            resource_id=resource[1],
        )  # fmt: skip
        raise BadRequest(
            wrong, errors=[{"field": field, "in": "body", "message": "wrong password"}]
        )
    await services.throttle.reauth_succeeded(str(user.id))


async def change_password(ctx: Acting, *, current_password: str, new_password: str) -> None:
    """Re-enter the current password, set a new one, end every other session."""
    services = ctx.services
    principal = ctx.me()
    user = await own_row(ctx)
    tenant = await ctx.db.get(Tenant, user.tenant_id) if user.tenant_id else None
    stored_hash, email, names = user.password_hash, user.email, (user.first_name, user.last_name)
    # Both hashes run with no transaction open (nothing has been written yet).
    await confirm_current_password(
        ctx,
        user,
        current_password,
        field="currentPassword",
        failure_action="auth:password:reauth_failure",
        resource=("user", principal.user_id),
        wrong="The current password is wrong.",
    )
    check_password(
        password_policy(tenant), new_password, email=email, names=names, field="newPassword"
    )
    new_hash = await services.hasher.hash_async(new_password)
    user = await ctx.db.get(User, principal.user_id, with_for_update=True, populate_existing=True)
    if user is None or user.password_hash != stored_hash:
        # Changed by a concurrent request while we hashed: the re-entry proved the old one.
        raise BadRequest(
            "The password was changed meanwhile; sign in again.",
            errors=[{"field": "currentPassword", "in": "body", "message": "no longer current"}],
        )
    user.password_hash = new_hash
    user.password_changed_at = utcnow()
    user.updated_by = user.id
    # Every other session of this user ends; the current one stays signed in.
    await auth.revoke_other_sessions(
        ctx.db, user.id, keep=principal.session_id, reason="password_change"
    )
    await ctx.record(
        "auth:password:change",
        category="authentication",
        resource_type="user",
        resource_id=user.id,
    )


async def _open_invitation(
    db: AsyncSession, digest: str, *, lock: bool = False
) -> tuple[Invitation, User, Tenant]:
    stmt = (
        select(Invitation, User, Tenant)
        .join(User, User.id == Invitation.user_id)
        .join(Tenant, Tenant.id == Invitation.tenant_id)
        .where(Invitation.token_hash == digest)
    )
    row = (await db.execute(stmt.with_for_update() if lock else stmt)).first()
    if row is None:
        raise Unauthorized(INVITATION_INVALID)
    invitation, user, tenant = row
    if (
        invitation.accepted_at is not None
        or invitation.expires_at <= utcnow()
        or not user.is_active
        or tenant.status != "active"
    ):
        raise Unauthorized(INVITATION_INVALID)
    return invitation, user, tenant


async def accept_invitation(
    services: Services, db: AsyncSession, *, token: str, password: str, context: AuditContext
) -> None:
    """Set the invited person's password; the token works once."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    # Checked and hashed outside the request's transaction (no lock held while hashing),
    # then re-checked under a row lock so that a token is accepted once only.
    async with services.db.session(all_tenants=True) as lookup:
        _, user, tenant = await _open_invitation(lookup, digest)
    check_password(
        password_policy(tenant), password, email=user.email, names=(user.first_name, user.last_name)
    )
    password_hash = await services.hasher.hash_async(password)
    invitation, user, _ = await _open_invitation(db, digest, lock=True)
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    invitation.accepted_at = utcnow()
    await audit.record(
        db,
        action="auth:invitation:accept",
        category="user_activity",
        tenant_id=user.tenant_id,
        context=AuditContext(user.id, context.ip_address, context.user_agent),
        resource_type="user",
        resource_id=user.id,
    )
