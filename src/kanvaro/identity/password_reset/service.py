"""Password reset: a single-use link by mail, then a new password that ends every session.

Requesting answers the same (202) for every address, known or not, throttled or not, and at
the same speed: the account lookup, the token and the mail all happen in a background task
with a transaction of its own, and the mail leaves only once that transaction has committed.
Nothing is mailed to an address without an account. The link's token is 32 random bytes;
only its SHA-256 is stored, for ``password_reset_minutes``; a newer request voids the older
links. The link carries the token in its fragment (``#token=``), which browsers never send to
a server, so it stays out of access logs and ``Referer`` headers.

Confirming spends the token under a row lock (a token works once, even when sent twice at
once), checks the tenant's password policy, sets the new hash (computed with no transaction
open), ends all the user's sessions and is audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from datetime import UTC, timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import on_commit, utcnow
from kanvaro.errors import BadRequest, TooManyRequests
from kanvaro.identity import auth
from kanvaro.identity import auth_statements as sql
from kanvaro.identity.models import User
from kanvaro.identity.password_reset.models import PasswordResetToken
from kanvaro.identity.users import check_password
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant
from kanvaro.tenancy.service import password_policy

log = structlog.get_logger("kanvaro.identity")
_in_flight: set[asyncio.Task[None]] = set()

SUBJECT = "Reset your Kanvaro password"
INVALID = "This reset link is invalid, used or expired; ask for a new one."
RESET_PATH = "/password-reset"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def request_reset(
    services: Services, *, email: str, tenant: str | None, context: AuditContext
) -> None:
    """Accept a reset request; the work is done in the background (see the module)."""
    verdict = await services.throttle.attempt_reset_request(email, context.ip_address)
    if not verdict.allowed:
        log.warning("password_reset_throttled", ip=context.ip_address)
        return
    task = asyncio.create_task(_issue(services, email, tenant, context))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def _issue(services: Services, email: str, tenant: str | None, context: AuditContext) -> None:
    try:
        async with services.db.reader(all_tenants=True) as reader:
            row = await auth.account_named(reader, tenant, email.strip().lower())
        if row is None or not auth.usable_account(row):
            return  # nobody to mail: the caller has had the same answer anyway
        user_id = sql.as_uuid(row["id"])
        tenant_id = sql.uuid_or_none(row["tenant_id"])
        async with services.db.session(all_tenants=True) as db:
            await issue_link(services, db, user_id=user_id, tenant_id=tenant_id, context=context)
    except Exception as exc:  # logged, never raised: the caller has had his answer
        log.error("password_reset_request_failed", error_type=type(exc).__name__)


async def issue_link(
    services: Services,
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    context: AuditContext,
) -> None:
    """A new reset link for the user (older ones void), audited, mailed after commit."""
    user = await db.get(User, user_id)
    if user is None:
        return
    now = utcnow()
    await db.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    minutes = services.settings.password_reset_minutes
    db.add(
        PasswordResetToken(
            tenant_id=tenant_id,
            user_id=user_id,
            token_hash=token_hash(token),
            expires_at=now + timedelta(minutes=minutes),
        )
    )
    await audit.record(
        db,
        action="auth:password:reset_request",
        category="authentication",
        tenant_id=tenant_id,
        context=AuditContext(user_id, context.ip_address, context.user_agent),
        resource_type="user",
        resource_id=user_id,
    )
    link = f"{services.settings.public_url.rstrip('/')}{RESET_PATH}#token={token}"
    body = (
        f"Hello {user.first_name},\n\n"
        "someone (hopefully you) asked to reset the password of your Kanvaro account. Choose a "
        f"new one here within {minutes} minutes:\n\n{link}\n\n"
        "The link works once. Setting a new password signs you out everywhere. If you did not "
        "ask, ignore this message: your password stays as it is.\n"
    )
    address = user.email

    async def send() -> None:
        try:
            await services.mailer.send(address, SUBJECT, body)
        except Exception as exc:  # the link stands; the body (and its token) is not logged
            log.error("password_reset_mail_not_sent", error_type=type(exc).__name__)

    on_commit(db, send)


async def confirm_reset(
    services: Services,
    db: AsyncSession,
    *,
    token: str,
    new_password: str,
    context: AuditContext,
) -> None:
    """Spend the token, set the new password, end every session of the user (audited)."""
    verdict = await services.throttle.attempt_reset_confirm(context.ip_address)
    if not verdict.allowed:
        raise TooManyRequests(
            "Too many reset attempts from this address. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    digest = token_hash(token)
    # Looked up, checked and hashed outside the request's transaction (no lock is held while
    # hashing), then spent under a row lock, so a token works once.
    async with services.db.session(all_tenants=True) as lookup:
        _, user, tenant = await _open(lookup, digest)
        email, names, policy = (
            user.email,
            (user.first_name, user.last_name),
            password_policy(tenant),
        )
    check_password(policy, new_password, email=email, names=names, field="newPassword")
    new_hash = await services.hasher.hash_async(new_password)
    row, user, _ = await _open(db, digest, lock=True)
    now = utcnow()
    row.used_at = now
    user.password_hash = new_hash
    user.password_changed_at = now
    await auth.revoke_user_sessions(db, user.id, reason="password_reset")
    await audit.record(
        db,
        action="auth:password:reset",
        category="authentication",
        tenant_id=user.tenant_id,
        context=AuditContext(user.id, context.ip_address, context.user_agent),
        resource_type="user",
        resource_id=user.id,
    )


async def _open(
    db: AsyncSession, digest: str, *, lock: bool = False
) -> tuple[PasswordResetToken, User, Tenant | None]:
    stmt = (
        select(PasswordResetToken, User, Tenant)
        .join(User, User.id == PasswordResetToken.user_id)
        .outerjoin(Tenant, Tenant.id == User.tenant_id)
        .where(PasswordResetToken.token_hash == digest)
    )
    if lock:
        stmt = stmt.with_for_update(of=[PasswordResetToken, User])
    found = (await db.execute(stmt)).first()
    if found is None:
        raise _invalid()
    row, user, tenant = found
    # SQLite hands back naive datetimes (stored as UTC).
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    usable = user.is_active and (
        tenant.status == "active" if tenant is not None else user.is_super_admin
    )
    if row.used_at is not None or expires <= utcnow() or not usable:
        raise _invalid()
    return row, user, tenant


def _invalid() -> BadRequest:
    return BadRequest(
        INVALID, errors=[{"field": "token", "in": "body", "message": "invalid, used or expired"}]
    )


async def drain() -> None:
    """Wait for requests still being handled in the background (tests, shutdown)."""
    if _in_flight:
        await asyncio.gather(*list(_in_flight), return_exceptions=True)
