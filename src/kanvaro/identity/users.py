"""Creating people: the first admin, members with a password, members by invitation."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import SYSTEM, AuditContext
from kanvaro.db import end_read_only_prefix, utcnow
from kanvaro.errors import Conflict, Unprocessable
from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.models import Invitation, User
from kanvaro.security.passwords import PasswordHasher, PasswordPolicy
from kanvaro.tenancy.models import Role

USER_AUDIT_FIELDS = ("email", "first_name", "last_name", "role_id", "is_active", "is_super_admin")


def check_password(
    policy: PasswordPolicy,
    password: str,
    *,
    email: str,
    names: tuple[str, ...],
    field: str = "password",
) -> None:
    problems = policy.problems(password, context=(email.split("@")[0], *names))
    if problems:
        raise Unprocessable(
            "The password does not meet the password policy.",
            errors=[
                {"field": field, "in": "body", "message": p, "type": "password_policy"}
                for p in problems
            ],
        )


EMAIL_TAKEN = Conflict(
    "A user with this email already exists.",
    errors=[{"field": "email", "in": "body", "message": "already in use"}],
)


async def create_user(
    session: AsyncSession,
    hasher: PasswordHasher,
    *,
    tenant_id: uuid.UUID | None,
    email: str,
    first_name: str,
    last_name: str,
    role: Role | None,
    password: str | None,
    policy: PasswordPolicy,
    phone: str | None = None,
    is_super_admin: bool = False,
    context: AuditContext = SYSTEM,
    password_hash: str | None = None,
    deliverable_only: bool = False,
) -> User:
    """Create an account in ``tenant_id`` (``None``: an instance super admin).

    A plaintext ``password`` is checked against the policy and hashed with no transaction
    open: the read-only prefix of the caller's transaction is committed first (refused if it
    has written anything). A caller that has written already passes ``password_hash``.
    """
    try:
        email = normalize_email(email, deliverable_only=deliverable_only)
    except InvalidEmail as exc:
        raise Unprocessable(
            "The email address is not valid.",
            errors=[{"field": "email", "in": "body", "message": str(exc)}],
        ) from None
    # Unique per tenant (and among super admins). Only this tenant's rows are visible here, so
    # nothing is learnt about other tenants' addresses; the unique index has the last word.
    if await _email_taken(session, tenant_id, email):
        raise EMAIL_TAKEN
    if password is not None:
        check_password(policy, password, email=email, names=(first_name, last_name))
        await end_read_only_prefix(session)
        password_hash = await hasher.hash_async(password)
        if await _email_taken(session, tenant_id, email):  # created while we hashed
            raise EMAIL_TAKEN
    user = User(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        phone=phone,
        role_id=role.id if role else None,
        is_super_admin=is_super_admin,
        is_active=True,
        password_hash=password_hash,
        password_changed_at=utcnow() if password_hash else None,
        created_by=context.actor_id,
        updated_by=context.actor_id,
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        raise EMAIL_TAKEN from None
    await audit.record(
        session,
        action="api:user:create",
        category="user_activity" if not is_super_admin else "permissions",
        tenant_id=tenant_id,
        context=context,
        resource_type="user",
        resource_id=user.id,
        changes=audit.diff(
            None, {**audit.snapshot(user, USER_AUDIT_FIELDS), "role": role.name if role else None}
        ),
    )
    return user


async def _email_taken(session: AsyncSession, tenant_id: uuid.UUID | None, email: str) -> bool:
    owner = User.tenant_id.is_(None) if tenant_id is None else User.tenant_id == tenant_id
    stmt = select(User.id).where(owner, func.lower(User.email) == email)
    return (await session.execute(stmt)).first() is not None


def invitation_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


async def create_invitation(
    session: AsyncSession, *, user: User, ttl_hours: int, context: AuditContext
) -> str:
    """Store the invitation (hash only) and return the one-time token to send."""
    token, digest = invitation_token()
    session.add(
        Invitation(
            id=uuid.uuid4(),
            tenant_id=user.tenant_id,
            user_id=user.id,
            token_hash=digest,
            expires_at=utcnow() + timedelta(hours=ttl_hours),
            invited_by=context.actor_id,
        )
    )
    await session.flush()
    await audit.record(
        session,
        action="api:invitation:create",
        category="user_activity",
        tenant_id=user.tenant_id,
        context=context,
        resource_type="user",
        resource_id=user.id,
        changes={"expiresInHours": ttl_hours},
    )
    return token
