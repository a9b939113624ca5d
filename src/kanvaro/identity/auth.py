"""Password login, refresh-token rotation with reuse detection, and logout.

A login creates a session (one refresh-token family). Each refresh spends its token and
issues the next one; presenting a spent refresh token again means it was stolen (or replayed)
and ends the whole session at once. Unknown email, wrong password, disabled account and
suspended tenant all answer the same 401 after the same amount of hashing work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import record_surviving
from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import utcnow
from kanvaro.errors import TooManyRequests, Unauthorized
from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.models import RefreshToken, User, UserSession
from kanvaro.security.tokens import ACCESS, REFRESH, TokenError, token_hash
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant

security_log = structlog.get_logger("kanvaro.security")

INVALID_CREDENTIALS = "The email address, password or tenant is wrong."


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID

    def __repr__(self) -> str:
        return f"TokenPair(session_id={self.session_id})"

    def to_json(self) -> dict[str, Any]:
        return {
            "requiresMFA": False,
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "tokenType": "Bearer",
            "expiresIn": self.expires_in,
        }


async def _issue(services: Services, session: AsyncSession, user_session: UserSession) -> TokenPair:
    claims = {
        "sub": str(user_session.user_id),
        "sid": str(user_session.id),
        "tid": str(user_session.tenant_id) if user_session.tenant_id else None,
    }
    access, _ = services.tokens.issue(ACCESS, claims)
    refresh, refresh_claims = services.tokens.issue(REFRESH, claims)
    session.add(
        RefreshToken(
            jti=refresh_claims["jti"],
            session_id=user_session.id,
            tenant_id=user_session.tenant_id,
            token_hash=token_hash(refresh),
            issued_at=utcnow(),
            expires_at=utcnow() + timedelta(seconds=services.tokens.refresh_ttl),
        )
    )
    await session.flush()
    return TokenPair(access, refresh, services.tokens.access_ttl, user_session.id)


@dataclass(frozen=True)
class FirstFactor:
    """A verified first factor: who proved what. Opening a session is a separate step, so
    that MFA, passkeys and SSO add steps instead of copies of sign-in."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    method: str
    password_hash: str | None  # as verified: a change meanwhile voids the sign-in
    new_hash: str | None = None  # an upgraded (rehashed) password to store

    def __repr__(self) -> str:
        return f"FirstFactor(user_id={self.user_id}, method={self.method})"


async def login(
    services: Services,
    session: AsyncSession,
    *,
    email: str,
    password: str,
    tenant: str | None = None,
    context: AuditContext,
    device_info: dict[str, Any],
) -> TokenPair:
    """Password sign-in: verify the first factor, open a session, issue its tokens."""
    factor = await verify_password(
        services, email=email, password=password, tenant=tenant, context=context
    )
    user_session = await open_session(
        services, session, factor, context=context, device_info=device_info
    )
    return await issue_tokens(services, session, user_session)


async def verify_password(
    services: Services,
    *,
    email: str,
    password: str,
    tenant: str | None,
    context: AuditContext,
) -> FirstFactor:
    """Step 1: the account named by (tenant, email) and its password.

    Runs with no transaction of the caller's open: the account is read in a short transaction
    of its own and the hash is checked with none open. Unknown tenant, unknown address, an
    address that cannot exist, a wrong password, a disabled account and a suspended tenant all
    answer the same 401 after the same hashing work; every attempt is counted before the check.
    """
    email = email.strip().lower()
    async with services.db.session(all_tenants=True) as lookup:
        user, usable = await _candidate(lookup, tenant, email)
    # Counted per account once it is known (so naming the tenant or leaving it out on a
    # single-tenant instance cannot double the guesses), and always before the hash check.
    account = f"user:{user.id}" if user is not None else _account_key(tenant, email)
    verdict = await services.throttle.attempt(account, context.ip_address)
    if not verdict.allowed:
        security_log.warning("login_throttled", ip=context.ip_address)
        raise TooManyRequests(
            "Too many failed sign-in attempts. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    stored_hash = user.password_hash if user else None
    valid, new_hash = await services.hasher.verify_async(password, stored_hash)
    if not (valid and usable and user is not None):
        reason = "unknown_user" if user is None else "bad_password" if not valid else "disabled"
        security_log.info(
            "auth_attempt",
            success=False,
            reason=reason,
            ip=context.ip_address,
            user_id=str(user.id) if user else None,
        )
        await record_surviving(
            services,
            action="auth:login:failure",
            category="authentication",
            tenant_id=user.tenant_id if user else None,
            context=AuditContext(user.id if user else None, context.ip_address, context.user_agent),
            resource_type="user" if user else None,
            resource_id=user.id if user else None,
            changes={"reason": reason},
        )
        raise Unauthorized(INVALID_CREDENTIALS)
    await services.throttle.succeeded(account)
    return FirstFactor(user.id, user.tenant_id, "password", stored_hash, new_hash)


def _account_key(tenant: str | None, email: str) -> str:
    """Attempts are counted per account, and an account is (tenant, address)."""
    return f"{(tenant or '').strip().lower()}\x1f{email}"


async def open_session(
    services: Services,
    session: AsyncSession,
    factor: FirstFactor,
    *,
    context: AuditContext,
    device_info: dict[str, Any],
) -> UserSession:
    """Step 2: a session for a verified factor, in the caller's transaction (audited)."""
    # Re-read under a row lock: deactivated, suspended or re-passworded since step 1 means no
    # session.
    fresh, usable = await _account(session, factor.user_id, lock=True)
    if fresh is None or not usable or fresh.password_hash != factor.password_hash:
        raise Unauthorized(INVALID_CREDENTIALS)
    now = utcnow()
    # A statement, not an attribute change: signing in is not an edit of the person, so it
    # must not bump the row's version (an admin's pending PATCH would then get 412).
    login_values: dict[str, Any] = {"last_login_at": now}
    if factor.new_hash:
        login_values["password_hash"] = factor.new_hash  # upgrade of an older hash
    await session.execute(
        update(User)
        .where(User.id == fresh.id)
        .values(**login_values)
        .execution_options(synchronize_session=False)
    )
    user_session = UserSession(
        id=uuid.uuid4(),
        tenant_id=fresh.tenant_id,
        user_id=fresh.id,
        device_id=str(device_info.get("deviceId") or uuid.uuid4()),
        device_info=device_info,
        ip_address=context.ip_address,
        auth_methods=[factor.method],
        last_activity_at=now,
        expires_at=now + timedelta(seconds=services.tokens.refresh_ttl),
        is_active=True,
    )
    session.add(user_session)
    await session.flush()
    await audit.record(
        session,
        action="auth:login:success",
        category="authentication",
        tenant_id=fresh.tenant_id,
        context=AuditContext(fresh.id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=user_session.id,
        changes={"methods": [factor.method], "rehashed": bool(factor.new_hash)},
    )
    security_log.info("auth_attempt", success=True, user_id=str(fresh.id), ip=context.ip_address)
    return user_session


async def issue_tokens(
    services: Services, session: AsyncSession, user_session: UserSession
) -> TokenPair:
    """Step 3: an access and a refresh token for an open session."""
    return await _issue(services, session, user_session)


def _usable(user: User, tenant: Tenant | None) -> bool:
    return bool(
        user.is_active
        and (
            (tenant is None and user.is_super_admin)
            or (tenant is not None and tenant.status == "active")
        )
    )


async def _candidate(
    session: AsyncSession, tenant_slug: str | None, email: str
) -> tuple[User | None, bool]:
    """The account that (tenant, email) names, and whether it may sign in at all.

    With a tenant slug: that tenant's member. Without one: the instance super admin of that
    address, else the member of the only tenant, if the instance has exactly one. An address
    that is no valid email address names nobody.
    """
    try:
        email = normalize_email(email)
    except InvalidEmail:
        return None, False
    stmt = select(User, Tenant).outerjoin(Tenant, Tenant.id == User.tenant_id)
    if tenant_slug is not None:
        stmt = stmt.where(Tenant.slug == tenant_slug.strip().lower())
    else:
        admin = (
            await session.execute(
                stmt.where(User.tenant_id.is_(None), func.lower(User.email) == email)
            )
        ).first()
        if admin is not None:
            return admin[0], _usable(admin[0], None)
        only = (await session.execute(select(Tenant.id).limit(2))).scalars().all()
        if len(only) != 1:
            return None, False
        stmt = stmt.where(User.tenant_id == only[0])
    row = (await session.execute(stmt.where(func.lower(User.email) == email))).first()
    if row is None:
        return None, False
    return row[0], _usable(row[0], row[1])


async def _account(
    session: AsyncSession, user_id: uuid.UUID, *, lock: bool = False
) -> tuple[User | None, bool]:
    stmt = (
        select(User, Tenant)
        .outerjoin(Tenant, Tenant.id == User.tenant_id)
        .where(User.id == user_id)
    )
    if lock:
        stmt = stmt.with_for_update(of=User)
    row = (await session.execute(stmt)).first()
    if row is None:
        return None, False
    return row[0], _usable(row[0], row[1])


async def refresh(
    services: Services, session: AsyncSession, *, refresh_token: str, context: AuditContext
) -> TokenPair:
    try:
        claims = await services.verify_token(refresh_token, REFRESH)
    except TokenError:
        raise Unauthorized("Invalid refresh token.") from None
    stored = await session.get(RefreshToken, claims["jti"], with_for_update=True)
    if stored is None or stored.token_hash != token_hash(refresh_token):
        raise Unauthorized("Invalid refresh token.")
    user_session = await session.get(UserSession, stored.session_id)
    user = await session.get(User, user_session.user_id) if user_session else None
    if user_session is None or user is None:
        raise Unauthorized("Invalid refresh token.")
    if stored.used_at is not None:
        # Reuse of a spent token: someone else holds the family. End it for everyone.
        await _end_reused_family(services, user_session, user, context)
        raise Unauthorized("Refresh token reuse detected; the session has been ended.")
    now = utcnow()
    tenant = await session.get(Tenant, user.tenant_id) if user.tenant_id else None
    if (
        not user_session.is_active
        or user_session.expires_at <= now
        or not user.is_active
        or (tenant is not None and tenant.status != "active")
    ):
        raise Unauthorized("Session ended.")
    stored.used_at = now
    user_session.last_activity_at = now
    pair = await _issue(services, session, user_session)
    await audit.record(
        session,
        action="auth:token:refresh",
        category="authentication",
        tenant_id=user.tenant_id,
        context=AuditContext(user.id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=user_session.id,
    )
    return pair


async def _end_reused_family(
    services: Services, user_session: UserSession, user: User, context: AuditContext
) -> None:
    security_log.warning(
        "refresh_token_reuse",
        user_id=str(user.id),
        session_id=str(user_session.id),
        ip=context.ip_address,
    )
    session_id, user_id, tenant_id = user_session.id, user.id, user.tenant_id

    async def end(session: AsyncSession) -> None:
        await revoke_session(session, session_id, reason="refresh_token_reuse")

    await services.db.after_transaction(end)
    await record_surviving(
        services,
        action="auth:token:reuse",
        category="authentication",
        tenant_id=tenant_id,
        context=AuditContext(user_id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=session_id,
    )


async def revoke_session(session: AsyncSession, session_id: uuid.UUID, *, reason: str) -> bool:
    """End one session; False when it was already ended (or is not visible here)."""
    result = await session.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.is_active.is_(True))
        .values(is_active=False, revoked_at=utcnow(), revoked_reason=reason)
    )
    return result.rowcount == 1


async def revoke_user_sessions(session: AsyncSession, user_id: uuid.UUID, *, reason: str) -> None:
    await session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.is_active.is_(True))
        .values(is_active=False, revoked_at=utcnow(), revoked_reason=reason)
    )


async def revoke_other_sessions(
    session: AsyncSession, user_id: uuid.UUID, *, keep: uuid.UUID, reason: str
) -> None:
    await session.execute(
        update(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.is_active.is_(True),
            UserSession.id != keep,
        )
        .values(is_active=False, revoked_at=utcnow(), revoked_reason=reason)
    )
