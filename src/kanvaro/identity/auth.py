"""Password login, refresh-token rotation with reuse detection, and logout.

A login creates a session (one refresh-token family). Each refresh spends its token and
issues the next one; presenting a spent refresh token again means it was stolen (or replayed)
and ends the whole session at once. Unknown email, wrong password, disabled account and
suspended tenant all answer the same 401 after the same amount of hashing work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro import metrics
from kanvaro.acting import record_surviving
from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import on_commit, utcnow
from kanvaro.errors import TooManyRequests, Unauthorized
from kanvaro.identity import auth_statements as sql
from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.models import UserSession
from kanvaro.reads import Reader
from kanvaro.security.tokens import ACCESS, REFRESH, TokenError, token_hash
from kanvaro.services import Services

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


@dataclass(frozen=True)
class OpenedSession:
    """A session (one refresh-token family): what its tokens are issued for."""

    id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None

    def claims(self) -> dict[str, str | None]:
        return {
            "sub": str(self.user_id),
            "sid": str(self.id),
            "tid": str(self.tenant_id) if self.tenant_id else None,
        }


@dataclass(frozen=True)
class _Signed:
    pair: TokenPair
    refresh_jti: str
    refresh_hash: str  # what the database keeps of the refresh token


def _sign(services: Services, opened: OpenedSession) -> _Signed:
    claims = opened.claims()
    access, _ = services.tokens.issue(ACCESS, claims)
    refresh_token, refresh_claims = services.tokens.issue(REFRESH, claims)
    pair = TokenPair(access, refresh_token, services.tokens.access_ttl, opened.id)
    return _Signed(pair, refresh_claims["jti"], token_hash(refresh_token))


def _refresh_expiry(services: Services, now: datetime) -> datetime:
    return now + timedelta(seconds=services.tokens.refresh_ttl)


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
    opened = await open_session(services, session, factor, context=context, device_info=device_info)
    return await issue_tokens(services, session, opened)


async def verify_password(
    services: Services,
    *,
    email: str,
    password: str,
    tenant: str | None,
    context: AuditContext,
) -> FirstFactor:
    """Step 1: the account named by (tenant, email) and its password.

    Runs with no transaction of the caller's open: the account is read in one autocommit
    statement and the hash is checked with no transaction open. Unknown tenant, unknown
    address, an address that cannot exist, a wrong password, a disabled account and a
    suspended tenant all answer the same 401 after the same hashing work; every attempt is
    counted before the check.
    """
    email = email.strip().lower()
    async with services.db.reader(all_tenants=True) as reader:
        account_row = await _candidate(reader, tenant, email)
    user_id = sql.as_uuid(account_row["id"]) if account_row is not None else None
    tenant_id = sql.uuid_or_none(account_row["tenant_id"]) if account_row is not None else None
    # Counted per account once it is known (so naming the tenant or leaving it out on a
    # single-tenant instance cannot double the guesses), and always before the hash check.
    account = f"user:{user_id}" if user_id is not None else _account_key(tenant, email)
    verdict = await services.throttle.attempt(account, context.ip_address)
    if not verdict.allowed:
        security_log.warning("login_throttled", ip=context.ip_address)
        metrics.count_sign_in("throttled")
        raise TooManyRequests(
            "Too many failed sign-in attempts. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    stored_hash = account_row["password_hash"] if account_row is not None else None
    valid, new_hash = await services.hasher.verify_async(password, stored_hash)
    if not (valid and user_id is not None and _usable(account_row)):
        reason = "unknown_user" if user_id is None else "bad_password" if not valid else "disabled"
        security_log.info(
            "auth_attempt",
            success=False,
            reason=reason,
            ip=context.ip_address,
            user_id=str(user_id) if user_id else None,
        )
        await record_surviving(
            services,
            action="auth:login:failure",
            category="authentication",
            tenant_id=tenant_id,
            context=AuditContext(user_id, context.ip_address, context.user_agent),
            resource_type="user" if user_id else None,
            resource_id=user_id,
            changes={"reason": reason},
        )
        metrics.count_sign_in("failure")
        raise Unauthorized(INVALID_CREDENTIALS)
    await services.throttle.succeeded(account)
    return FirstFactor(user_id, tenant_id, "password", stored_hash, new_hash)


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
) -> OpenedSession:
    """Step 2: a session for a verified factor, in the caller's transaction (audited)."""
    now = utcnow()
    opened_id = uuid.uuid4()
    # Under the account's row lock: deactivated, suspended or re-passworded since step 1
    # matches nothing and means no session.
    granted = await sql.sign_in_and_open_session(
        session,
        user_id=factor.user_id,
        verified_hash=factor.password_hash,
        new_hash=factor.new_hash,  # an upgrade of an older hash, or None
        new_session={
            "session_id": opened_id,
            "device_id": str(device_info.get("deviceId") or uuid.uuid4()),
            "device_info": device_info,
            "ip_address": context.ip_address,
            "auth_methods": [factor.method],
            "expires_at": _refresh_expiry(services, now),
        },
        now=now,
    )
    if granted is None:
        metrics.count_sign_in("failure")
        raise Unauthorized(INVALID_CREDENTIALS)
    opened = OpenedSession(opened_id, factor.user_id, sql.uuid_or_none(granted["tenant_id"]))
    await audit.record(
        session,
        action="auth:login:success",
        category="authentication",
        tenant_id=opened.tenant_id,
        context=AuditContext(opened.user_id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=opened.id,
        changes={"methods": [factor.method], "rehashed": bool(factor.new_hash)},
    )
    security_log.info(
        "auth_attempt", success=True, user_id=str(opened.user_id), ip=context.ip_address
    )
    on_commit(session, _count_success)  # a sign-in whose transaction rolls back did not happen
    return opened


async def _count_success() -> None:
    metrics.count_sign_in("success")


async def issue_tokens(
    services: Services, session: AsyncSession, opened: OpenedSession
) -> TokenPair:
    """Step 3: an access and a refresh token for an open session."""
    signed = _sign(services, opened)
    now = utcnow()
    await sql.row(
        session,
        sql.ISSUE_REFRESH_TOKEN,
        new_jti=signed.refresh_jti,
        new_hash=signed.refresh_hash,
        session_id=opened.id,
        tenant_id=opened.tenant_id,
        now=now,
        expires_at=_refresh_expiry(services, now),
    )
    return signed.pair


def _usable(account: Any) -> bool:
    """An enabled account of an active tenant, or an enabled super admin (no tenant)."""
    if account is None or not account["is_active"]:
        return False
    if account["tenant_id"] is None:
        return bool(account["is_super_admin"])
    return account["tenant_status"] == "active"


async def _candidate(reader: Reader, tenant_slug: str | None, email: str) -> Any:
    """The account that (tenant, email) names, or None.

    With a tenant slug: that tenant's member. Without one: the instance super admin of that
    address, else the member of the only tenant, if the instance has exactly one. An address
    that is no valid email address names nobody.
    """
    try:
        email = normalize_email(email)
    except InvalidEmail:
        return None
    if tenant_slug is not None:
        slug = tenant_slug.strip().lower()
        return await sql.read(reader, sql.ACCOUNT_IN_TENANT, slug=slug, email=email)
    return await sql.read(reader, sql.ACCOUNT_WITHOUT_TENANT, email=email)


INVALID_REFRESH = "Invalid refresh token."


async def refresh(
    services: Services, session: AsyncSession, *, refresh_token: str, context: AuditContext
) -> TokenPair:
    """Spend a refresh token and issue the next pair (audited). A spent token presented
    again ends its whole session."""
    try:
        claims = await services.verify_token(refresh_token, REFRESH)
        # The session a token names never changes its user or tenant.
        opened = OpenedSession(
            sql.as_uuid(claims["sid"]),
            sql.as_uuid(claims["sub"]),
            sql.uuid_or_none(claims.get("tid")),
        )
    except (TokenError, KeyError, ValueError):
        raise Unauthorized(INVALID_REFRESH) from None
    digest = token_hash(refresh_token)
    signed = _sign(services, opened)  # the next pair, stored by the same statement
    now = utcnow()
    rotation = await sql.rotate_refresh_token(
        session,
        jti=claims["jti"],
        token_hash=digest,
        session_id=opened.id,
        user_id=opened.user_id,
        new_jti=signed.refresh_jti,
        new_hash=signed.refresh_hash,
        now=now,
        expires_at=_refresh_expiry(services, now),
    )
    if not rotation.spent:
        raise await _refused(services, session, jti=claims["jti"], digest=digest, context=context)
    # Any refusal from here on rolls the spend back with the request's transaction.
    if not rotation.issued:
        raise Unauthorized("Session ended.")
    if sql.uuid_or_none(rotation.tenant_id) != opened.tenant_id:
        raise Unauthorized(INVALID_REFRESH)
    await audit.record(
        session,
        action="auth:token:refresh",
        category="authentication",
        tenant_id=opened.tenant_id,
        context=AuditContext(opened.user_id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=opened.id,
    )
    return signed.pair


async def _refused(
    services: Services, session: AsyncSession, *, jti: str, digest: str, context: AuditContext
) -> Unauthorized:
    """Why a refresh token spent nothing: unknown or not ours (invalid), or spent already
    (reuse: someone else holds the family, which then ends for everyone)."""
    state = await sql.row(session, sql.REFRESH_TOKEN_STATE, jti=jti)
    if state is None or state["token_hash"] != digest or state["used_at"] is None:
        return Unauthorized(INVALID_REFRESH)
    await _end_reused_family(
        services,
        session_id=sql.as_uuid(state["id"]),
        user_id=sql.as_uuid(state["user_id"]),
        tenant_id=sql.uuid_or_none(state["tenant_id"]),
        context=context,
    )
    return Unauthorized("Refresh token reuse detected; the session has been ended.")


async def _end_reused_family(
    services: Services,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    context: AuditContext,
) -> None:
    security_log.warning(
        "refresh_token_reuse",
        user_id=str(user_id),
        session_id=str(session_id),
        ip=context.ip_address,
    )

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
