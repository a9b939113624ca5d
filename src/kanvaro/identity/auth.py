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

from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import utcnow
from kanvaro.errors import TooManyRequests, Unauthorized
from kanvaro.identity.models import RefreshToken, User, UserSession
from kanvaro.security.tokens import ACCESS, REFRESH, TokenError, token_hash
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant

security_log = structlog.get_logger("kanvaro.security")

INVALID_CREDENTIALS = "Invalid email or password."


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


def normalize_email(email: str) -> str:
    return email.strip().lower()


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


async def login(
    services: Services,
    session: AsyncSession,
    *,
    email: str,
    password: str,
    context: AuditContext,
    device_info: dict[str, Any],
) -> TokenPair:
    """The session spans all tenants (the email decides the tenant)."""
    email = normalize_email(email)
    verdict = await services.throttle.attempt(email, context.ip_address)
    if not verdict.allowed:
        security_log.warning("login_throttled", ip=context.ip_address)
        raise TooManyRequests(
            "Too many failed sign-in attempts. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    # Looked up in a short transaction of its own: no connection and (on SQLite) no write
    # lock is held while the password is hashed. The request's session begins only once the
    # password is known to be right.
    async with services.db.session(all_tenants=True) as lookup:
        user, usable = await _candidate(lookup, email)
    stored_hash = user.password_hash if user else None
    valid, new_hash = await services.hasher.verify_async(password, stored_hash)
    if valid and usable and user is not None:
        # Re-read under a row lock: deactivated or re-passworded meanwhile means no entry.
        fresh, usable = await _candidate(session, email, lock=True)
        valid = fresh is not None and fresh.id == user.id and fresh.password_hash == stored_hash
        user = fresh if valid else user
    if not (valid and usable):
        reason = "unknown_user" if user is None else "bad_password" if not valid else "disabled"
        security_log.info(
            "auth_attempt",
            success=False,
            reason=reason,
            ip=context.ip_address,
            user_id=str(user.id) if user else None,
        )
        await _record_failure(services, user, reason, context)
        raise Unauthorized(INVALID_CREDENTIALS)
    assert user is not None
    await services.throttle.succeeded(email)
    now = utcnow()
    # A statement, not an attribute change: signing in is not an edit of the person, so it
    # must not bump the row's version (an admin's pending PATCH would then get 412).
    login_values: dict[str, Any] = {"last_login_at": now}
    if new_hash:
        login_values["password_hash"] = new_hash  # argon2id upgrade of an imported hash
    await session.execute(
        update(User)
        .where(User.id == user.id)
        .values(**login_values)
        .execution_options(synchronize_session=False)
    )
    user_session = UserSession(
        id=uuid.uuid4(),
        tenant_id=user.tenant_id,
        user_id=user.id,
        device_id=str(device_info.get("deviceId") or uuid.uuid4()),
        device_info=device_info,
        ip_address=context.ip_address,
        auth_methods=["password"],
        last_activity_at=now,
        expires_at=now + timedelta(seconds=services.tokens.refresh_ttl),
        is_active=True,
    )
    session.add(user_session)
    await session.flush()
    pair = await _issue(services, session, user_session)
    await audit.record(
        session,
        action="auth:login:success",
        category="authentication",
        tenant_id=user.tenant_id,
        context=AuditContext(user.id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=user_session.id,
        changes={"methods": ["password"], "rehashed": bool(new_hash)},
    )
    security_log.info("auth_attempt", success=True, user_id=str(user.id), ip=context.ip_address)
    return pair


async def _candidate(
    session: AsyncSession, email: str, *, lock: bool = False
) -> tuple[User | None, bool]:
    """The account for an email, and whether it may sign in at all."""
    stmt = (
        select(User, Tenant)
        .outerjoin(Tenant, Tenant.id == User.tenant_id)
        .where(func.lower(User.email) == email)
    )
    if lock:
        stmt = stmt.with_for_update(of=User)
    row = (await session.execute(stmt)).first()
    if row is None:
        return None, False
    user, tenant = row[0], row[1]
    usable = user.is_active and (
        (tenant is None and user.is_super_admin)
        or (tenant is not None and tenant.status == "active")
    )
    return user, bool(usable)


async def _record_failure(
    services: Services, user: User | None, reason: str, context: AuditContext
) -> None:
    """Audited after the request's transaction, which is rolled back by the 401."""
    tenant_id = user.tenant_id if user else None
    user_id = user.id if user else None

    async def write(session: AsyncSession) -> None:
        await audit.record(
            session,
            action="auth:login:failure",
            category="authentication",
            tenant_id=tenant_id,
            context=AuditContext(user_id, context.ip_address, context.user_agent),
            resource_type="user" if user_id else None,
            resource_id=user_id,
            changes={"reason": reason},
        )

    await services.db.after_transaction(write)


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

    async def write(session: AsyncSession) -> None:
        await revoke_session(session, session_id, reason="refresh_token_reuse")
        await audit.record(
            session,
            action="auth:token:reuse",
            category="authentication",
            tenant_id=tenant_id,
            context=AuditContext(user_id, context.ip_address, context.user_agent),
            resource_type="session",
            resource_id=session_id,
        )

    await services.db.after_transaction(write)


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
